// Lets oidc-provider 9 run on Debian 12's own nodejs (18.x), which is what a
// machine without node gets from `apt-get install nodejs`. oidc-provider 9
// asks for Node >= 20 and uses the global Web Crypto `crypto` (unflagged in
// Node 19), `crypto.hash` (Node 20.12) and `URL.parse` (Node 20.18). On a
// Node.js that has them this does nothing.
//
// provider.mjs imports this first, then oidc-provider dynamically, so that
// the resolve hook below is in place when oidc-provider's modules load.
import * as crypto from 'node:crypto';
import * as module from 'node:module';

if (globalThis.crypto === undefined) {
  globalThis.crypto = crypto.webcrypto;
}

if (typeof URL.parse !== 'function') {
  URL.parse = (url, base) => {
    try {
      return new URL(url, base);
    } catch {
      return null;
    }
  };
}

if (typeof crypto.hash !== 'function') {
  // `node:crypto` has no `hash` export here and a builtin's exports cannot be
  // added to: send oidc-provider's imports of it to a module that has one.
  const shim = new URL('./runtime-crypto.mjs', import.meta.url).href;
  const hooks = `
    export async function resolve(specifier, context, next) {
      if ((specifier === 'node:crypto' || specifier === 'crypto')
          && context.parentURL?.includes('/node_modules/')) {
        return { url: ${JSON.stringify(shim)}, shortCircuit: true };
      }
      return next(specifier, context);
    }`;
  module.register(`data:text/javascript,${encodeURIComponent(hooks)}`);
}
