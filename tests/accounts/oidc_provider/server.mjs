// A real OpenID Connect provider for Parley's sign-in tests: the certified `oidc-provider`
// package, configured like a strict production identity provider (PKCE required, RS256 ID
// tokens, discovery, end-session), plus a small control API the tests drive:
//
//   PUT  /_test/accounts/<id>   the claims of a person who can sign in (email, groups, ...)
//   POST /_test/tamper          {"mode": "..."}: how the next token responses are falsified
//                               (expired, bad_signature, wrong_audience, wrong_nonce,
//                               wrong_issuer, none); applied after the provider signed them
//   GET  /_test/log             the authorization and token requests the provider answered
//
// The sign-in page is our own (the package's development pages load web fonts from Google):
// one "Username" box and a "Sign in to Test IdP" button; consent is granted with the sign-in.
//
// Usage: node server.mjs --port 9000 --clients '[{"client_id": ..., "client_secret": ...,
//        "redirect_uris": [...], "post_logout_redirect_uris": [...]}]'

import { parseArgs } from 'node:util';
import * as crypto from 'node:crypto';

import Provider from 'oidc-provider';
import * as jose from 'jose';

const { values: args } = parseArgs({
  options: { port: { type: 'string' }, clients: { type: 'string' } },
});
const port = Number(args.port);
const issuer = `http://127.0.0.1:${port}`;
const clients = JSON.parse(args.clients);

const signingKey = await jose.generateKeyPair('RS256', { extractable: true });
const rogueKey = await jose.generateKeyPair('RS256', { extractable: true });
const publicJwk = { ...(await jose.exportJWK(signingKey.privateKey)), kid: 'test-key', alg: 'RS256', use: 'sig' };

const accounts = new Map();
let tamper = 'none';
const log = [];

const provider = new Provider(issuer, {
  clients: clients.map((c) => ({ response_types: ['code'], grant_types: ['authorization_code'], ...c })),
  jwks: { keys: [publicJwk] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  pkce: { required: () => true },
  scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  // Put the scopes' claims in the ID token too, as Keycloak and Entra do.
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: {
      enabled: true,
      // No confirmation page: the person asked Parley to sign them out.
      logoutSource: async (ctx, form) => {
        ctx.body = `<!DOCTYPE html><html><head><title>Signing out</title></head><body>${form}
          <button type="submit" form="op.logoutForm" name="logout" value="yes">Yes, sign me out</button></body></html>`;
      },
    },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  findAccount: async (ctx, id) => {
    const claims = accounts.get(id);
    if (!claims) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...claims }) };
  },
  ttl: { Session: 3600, Interaction: 600, AuthorizationCode: 60, IdToken: 3600, AccessToken: 3600, Grant: 3600 },
});
provider.proxy = false;

async function readForm(req) {
  let raw = '';
  for await (const chunk of req) raw += chunk;
  return new URLSearchParams(raw);
}

async function readJson(req) {
  let raw = '';
  for await (const chunk of req) raw += chunk;
  return raw ? JSON.parse(raw) : {};
}

const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);

async function falsify(idToken) {
  const claims = jose.decodeJwt(idToken);
  const now = Math.floor(Date.now() / 1000);
  let key = signingKey.privateKey;
  if (tamper === 'expired') Object.assign(claims, { iat: now - 3600, exp: now - 1800 });
  if (tamper === 'wrong_audience') claims.aud = 'someone-else';
  if (tamper === 'wrong_nonce') claims.nonce = 'not-the-nonce-parley-sent';
  if (tamper === 'wrong_issuer') claims.iss = 'http://127.0.0.1:1/another-issuer';
  if (tamper === 'bad_signature') key = rogueKey.privateKey;
  return new jose.SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: 'test-key', typ: 'JWT' }).sign(key);
}

provider.use(async (ctx, next) => {
  const path = ctx.path;
  if (path.startsWith('/_test/')) {
    if (ctx.method === 'PUT' && path.startsWith('/_test/accounts/')) {
      accounts.set(decodeURIComponent(path.slice('/_test/accounts/'.length)), await readJson(ctx.req));
      ctx.body = { ok: true };
    } else if (ctx.method === 'POST' && path === '/_test/tamper') {
      tamper = (await readJson(ctx.req)).mode || 'none';
      ctx.body = { ok: true, tamper };
    } else if (ctx.method === 'GET' && path === '/_test/log') {
      ctx.body = log;
    } else {
      ctx.status = 404;
    }
    return;
  }
  const match = path.match(/^\/interaction\/([^/]+)(\/login)?$/);
  if (match) {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    if (ctx.method === 'GET') {
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html><html lang="en"><head><title>Test IdP</title></head><body>
        <h1>Test IdP</h1><p>Signing in to ${escapeHtml(details.params.client_id)}</p>
        <form method="post" action="/interaction/${escapeHtml(details.uid)}/login">
        <label>Username <input name="login" autocomplete="off" required></label>
        <button type="submit">Sign in to Test IdP</button></form></body></html>`;
      return;
    }
    const accountId = (await readForm(ctx.req)).get('login');
    if (!accounts.has(accountId)) {
      ctx.status = 400;
      ctx.body = 'Unknown account';
      return;
    }
    const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
    grant.addOIDCScope(details.params.scope);
    const grantId = await grant.save();
    await provider.interactionFinished(
      ctx.req,
      ctx.res,
      { login: { accountId }, consent: { grantId } },
      { mergeWithLastSubmission: false },
    );
    ctx.respond = false;
    return;
  }
  if (path === '/auth') {
    log.push({ endpoint: 'authorization', query: ctx.query });
  }
  await next();
  if (path === '/token') {
    log.push({ endpoint: 'token', status: ctx.status });
    if (tamper !== 'none' && ctx.body && ctx.body.id_token) {
      ctx.body = { ...ctx.body, id_token: await falsify(ctx.body.id_token) };
    }
  }
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`test oidc provider listening at ${issuer}`);
});
