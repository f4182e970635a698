// `node:crypto` plus `hash` (Node >= 20.12), for runtime.mjs on older Node.js.
import crypto from 'node:crypto';

export * from 'node:crypto';
export default crypto;

export function hash(algorithm, data, outputEncoding = 'hex') {
  const digest = crypto.createHash(algorithm).update(data);
  return outputEncoding === 'buffer' ? digest.digest() : digest.digest(outputEncoding);
}
