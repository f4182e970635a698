// A real OAuth 2.0 authorization server for Credence's integration tests
// (crates/credence/tests/api/oidc.rs starts it). It is oidc-provider 9 with its
// development login/consent forms, over plain http on the loopback interface.
//
// Environment:
//   PORT                  port to listen on, on 127.0.0.1; 0 or unset: any free one
//   CLIENT_ID             the one confidential client's id          (required)
//   CLIENT_SECRET         its secret                                (required)
//   REDIRECT_URIS         its redirect URIs, comma-separated        (required)
//   ACCESS_TOKEN_TTL      access token lifetime, seconds            (default 5)
//   REFRESH_TOKEN_TTL     refresh token lifetime, seconds           (default 86400)
//   REFRESH_TOKEN_ROTATION
//       keep    (default) a refresh never rotates the refresh token, and the
//               refresh response carries NO refresh_token (as Google does):
//               the client must keep the one it has.
//       echo    never rotates; the response repeats the same refresh_token.
//       rotate  every refresh issues a new refresh token and consumes the old
//               one; presenting a consumed one is `invalid_grant` and revokes
//               the whole grant (oidc-provider's reuse detection).
//
//   EXIT_ON_STDIN_EOF     1: exit when stdin closes (the test process died)
//
// Test controls (simulated outage, token request counts): see /__test below.
//
// Prints `READY <port>` on stdout once it listens (other lines may come
// before: oidc-provider prints notices there). Exits on SIGTERM/SIGINT.
// Everything is in memory: a restart forgets every grant and token.
//
// The client authenticates with client_secret_basic or client_secret_post
// (oidc-provider 9 accepts either for a secret-based client) at the token,
// introspection and revocation endpoints. PKCE (S256 only) is required.
// Refresh tokens are issued on every authorization_code exchange, with or
// without `offline_access` (asking `offline_access` also works, but
// oidc-provider drops that scope unless `prompt=consent` is sent as well).

import * as crypto from 'node:crypto';
import * as http from 'node:http';

// Dynamic, after runtime.mjs: that one may install a module hook for old Node.js.
await import('./runtime.mjs');
const { default: Provider } = await import('oidc-provider');

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`provider.mjs: environment variable ${name} is required`);
    process.exit(2);
  }
  return value;
}

function seconds(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) {
    console.error(`provider.mjs: ${name} must be a positive whole number of seconds, got ${raw}`);
    process.exit(2);
  }
  return value;
}

const clientId = required('CLIENT_ID');
const clientSecret = required('CLIENT_SECRET');
const redirectUris = required('REDIRECT_URIS').split(',').map((s) => s.trim()).filter(Boolean);
const accessTokenTtl = seconds('ACCESS_TOKEN_TTL', 5);
const refreshTokenTtl = seconds('REFRESH_TOKEN_TTL', 24 * 60 * 60);
const rotation = process.env.REFRESH_TOKEN_ROTATION || 'keep';
if (!['keep', 'echo', 'rotate'].includes(rotation)) {
  console.error(`provider.mjs: REFRESH_TOKEN_ROTATION must be keep, echo or rotate, got ${rotation}`);
  process.exit(2);
}

// Scopes an app's modules might ask for; `openid` and `offline_access` are
// oidc-provider's own. Without resource indicators these all land on one
// opaque access token, which introspection reports with its `scope`.
const scopes = ['openid', 'offline_access', 'profile', 'email', 'contacts.read', 'contacts.write', 'mail.read', 'mail.send'];

// Bind first: with PORT=0 the issuer can only be known once listening.
const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(process.env.PORT || 0), '127.0.0.1', resolve);
});
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: redirectUris,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    // A web client may use http redirect URIs for the code flow.
    application_type: 'web',
  }],
  scopes,
  claims: {
    openid: ['sub'],
    profile: ['name'],
    email: ['email', 'email_verified'],
  },
  // Any login name is an account; its id is the name.
  async findAccount(ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return { sub, name: sub, email: `${sub}@example.test`, email_verified: true };
      },
    };
  },
  pkce: {
    required: () => true, // and oidc-provider 9 only knows S256
  },
  features: {
    devInteractions: { enabled: true },
    revocation: { enabled: true },
    introspection: {
      enabled: true,
      // The client may introspect its own tokens.
      allowedPolicy: async (ctx, client, token) => token.clientId === client.clientId,
    },
    // Plain OAuth: no `resource` parameter needed, tokens are opaque.
    resourceIndicators: { enabled: false },
    userinfo: { enabled: true },
  },
  // A client allowed the refresh_token grant always gets a refresh token.
  async issueRefreshToken(ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  // Tokens outlive the provider's browser session, as at real providers.
  async expiresWithSession() {
    return false;
  },
  rotateRefreshToken: rotation === 'rotate',
  ttl: {
    AccessToken: accessTokenTtl,
    AuthorizationCode: 60,
    IdToken: 60 * 60,
    RefreshToken: refreshTokenTtl,
    Interaction: 10 * 60,
    Session: 60 * 60,
    Grant: refreshTokenTtl,
  },
  clientBasedCORS: () => true,
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  // Errors as JSON-ish text rather than a styled page.
  async renderError(ctx, out) {
    ctx.type = 'text';
    ctx.body = Object.entries(out).map(([k, v]) => `${k}: ${v}`).join('\n');
  },
});

// Test controls, outside oidc-provider:
//   PUT /__test/outage?status=503   every other request answers that status
//                                   (JSON `temporarily_unavailable`) until
//   DELETE /__test/outage           ends the outage; grants are kept (unlike
//                                   a restart, which forgets them all)
//   GET /__test/stats               {"token_requests": {"<grant_type>": n}}
//                                   counts POSTs to the token endpoint
//   PUT /__test/hold                token requests wait (a provider that is
//   GET /__test/held                thinking) until DELETE /__test/hold lets
//   DELETE /__test/hold             them through; GET /__test/held answers
//                                   {"held": n} once at least one waits
//   PUT /__test/echo-error?pad=n    every token request is refused with
//   DELETE /__test/echo-error       400 invalid_grant whose error_description
//                                   repeats the code, verifier, refresh token
//                                   and client secret it was sent (and n more
//                                   characters), as a careless provider might
let outage = null;
const tokenRequests = {};
let holding = false;
const held = [];
const heldWaiters = [];
let echoError = null;

// The raw form body and the Basic credentials of a request the provider
// itself will not see (the echo answers in its place).
async function sentSecrets(ctx) {
  const raw = await new Promise((resolve, reject) => {
    let data = '';
    ctx.req.setEncoding('utf8');
    ctx.req.on('data', (chunk) => { data += chunk; });
    ctx.req.on('end', () => resolve(data));
    ctx.req.on('error', reject);
  });
  const form = new URLSearchParams(raw);
  const sent = ['code', 'code_verifier', 'refresh_token', 'client_secret']
    .map((name) => form.get(name))
    .filter(Boolean);
  const basic = /^Basic (.+)$/.exec(ctx.get('authorization') || '');
  if (basic) {
    const pair = Buffer.from(basic[1], 'base64').toString('utf8');
    const secret = pair.slice(pair.indexOf(':') + 1);
    sent.push(decodeURIComponent(secret.replace(/\+/g, ' ')));
  }
  return sent;
}
provider.use(async (ctx, next) => {
  if (ctx.path === '/__test/outage' && ctx.method === 'PUT') {
    outage = Number(ctx.query.status || 503);
    ctx.status = 204;
    return;
  }
  if (ctx.path === '/__test/outage' && ctx.method === 'DELETE') {
    outage = null;
    ctx.status = 204;
    return;
  }
  if (ctx.path === '/__test/hold' && ctx.method === 'PUT') {
    holding = true;
    ctx.status = 204;
    return;
  }
  if (ctx.path === '/__test/hold' && ctx.method === 'DELETE') {
    holding = false;
    held.splice(0).forEach((release) => release());
    ctx.status = 204;
    return;
  }
  if (ctx.path === '/__test/held' && ctx.method === 'GET') {
    if (held.length === 0) await new Promise((resolve) => heldWaiters.push(resolve));
    ctx.body = { held: held.length };
    return;
  }
  if (ctx.path === '/__test/echo-error' && ctx.method === 'PUT') {
    echoError = Number(ctx.query.pad || 0);
    ctx.status = 204;
    return;
  }
  if (ctx.path === '/__test/echo-error' && ctx.method === 'DELETE') {
    echoError = null;
    ctx.status = 204;
    return;
  }
  if (ctx.path === '/__test/stats' && ctx.method === 'GET') {
    ctx.body = { token_requests: tokenRequests };
    return;
  }
  if (outage !== null) {
    ctx.status = outage;
    ctx.body = { error: 'temporarily_unavailable', error_description: `simulated outage (${outage})` };
    return;
  }
  if (holding && ctx.method === 'POST' && ctx.path === '/token') {
    await new Promise((resolve) => {
      held.push(resolve);
      heldWaiters.splice(0).forEach((wake) => wake());
    });
  }
  if (echoError !== null && ctx.method === 'POST' && ctx.path === '/token') {
    const sent = await sentSecrets(ctx);
    ctx.status = 400;
    ctx.body = {
      error: 'invalid_grant',
      error_description: `grant not valid: ${sent.join(' / ')}${'x'.repeat(echoError)}`,
    };
    return;
  }

  await next();

  if (ctx.method === 'POST' && ctx.path === '/token') {
    const grantType = ctx.oidc?.params?.grant_type ?? 'none';
    tokenRequests[grantType] = (tokenRequests[grantType] ?? 0) + 1;
  }
  // REFRESH_TOKEN_ROTATION=keep: take the unchanged refresh token out of the
  // refresh response, so the client has to keep the one it holds.
  if (
    rotation === 'keep'
    && ctx.method === 'POST'
    && ctx.path === '/token'
    && ctx.status === 200
    && ctx.oidc?.params?.grant_type === 'refresh_token'
    && ctx.body && typeof ctx.body === 'object'
  ) {
    delete ctx.body.refresh_token;
  }
});

for (const event of ['server_error', 'grant.error', 'authorization.error', 'introspection.error', 'revocation.error']) {
  provider.on(event, (ctx, error) => {
    console.error(`provider.mjs: ${event}: ${error?.error ?? ''} ${error?.error_description ?? error?.message ?? error}`);
  });
}

server.on('request', provider.callback());

function stop(signal) {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 1000).unref();
  console.error(`provider.mjs: ${signal}, stopping`);
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
// EXIT_ON_STDIN_EOF=1: the parent holds our stdin; when it dies, so do we.
if (process.env.EXIT_ON_STDIN_EOF === '1') {
  process.stdin.on('end', () => stop('end of stdin'));
  process.stdin.resume();
}

console.log(`READY ${port}`);
