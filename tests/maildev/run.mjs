// A real SMTP server with an HTTP API for Credence's email tests
// (crates/credence/tests/api/support/maildev.rs): MailDev on ports the system
// picks, bound to 127.0.0.1. Prints `READY <smtp port> <api port>` once both
// listen; stops when its standard input closes (the test ended or died).
// INCOMING_USER / INCOMING_PASS require authentication; INCOMING_CERT and
// INCOMING_KEY (PEM files) make it speak TLS from the first byte.
import { MailDev } from 'maildev';

const options = {
  smtp: 0,
  web: 0,
  ip: '127.0.0.1',
  webIp: '127.0.0.1',
  silent: true,
};
if (process.env.INCOMING_USER) {
  options.incomingUser = process.env.INCOMING_USER;
  options.incomingPass = process.env.INCOMING_PASS ?? '';
}

if (process.env.INCOMING_CERT) {
  options.incomingSecure = true;
  options.incomingCert = process.env.INCOMING_CERT;
  options.incomingKey = process.env.INCOMING_KEY;
}

const maildev = new MailDev(options);
const servers = await maildev.start();
console.log(`READY ${servers.smtp.getPort()} ${servers.api.getPort()}`);

process.stdin.on('end', async () => {
  await maildev.stop();
  process.exit(0);
});
process.stdin.resume();
