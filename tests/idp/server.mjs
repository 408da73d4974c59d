// A real upstream OpenID Connect provider (panva/oidc-provider) for scitoken-issuer tests.
//
// Configuration is one JSON object, taken from the file named by argv[2], else from the
// IDP_CONFIG environment variable; PORT and ISSUER in the environment override its fields:
//
//   {
//     "port": 5556,                          // listens on 127.0.0.1 only
//     "issuer": "http://127.0.0.1:5556",     // default http://127.0.0.1:<port>
//     "rotateRefreshToken": true,            // rotate on every refresh (default true)
//     "clients": [{"client_id": "issuer", "client_secret": "…", "redirect_uris": ["…"],
//                  "grant_types": ["authorization_code", "refresh_token"]}],   // any RFC 7591 metadata
//     "accounts": [{"login": "alice", "password": "pw", "sub": "…", "preferred_username": "alice",
//                   "name": "Alice", "email": "alice@example.org"}]             // extra keys are claims
//   }
//
// Login uses oidc-provider's devInteractions pages (a login form posting `login` and `password`
// to /interaction/<uid>, then a consent form); a middleware in front of them checks the password
// against the configured accounts and answers 401 otherwise. Test-only admin endpoints:
//   POST /__test__/disable {"login": "alice"}  -> the account is no longer found (refresh: invalid_grant)
//   POST /__test__/enable  {"login": "alice"}
//   GET  /__test__/health                       -> 200 "ok"
import { generateKeyPairSync, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as querystring from 'node:querystring';

import Provider from 'oidc-provider';

function loadConfig() {
  const raw = process.argv[2] ? readFileSync(process.argv[2], 'utf8') : (process.env.IDP_CONFIG || '{}');
  const config = JSON.parse(raw);
  const port = Number(process.env.PORT || config.port || 5556);
  const issuer = process.env.ISSUER || config.issuer || `http://127.0.0.1:${port}`;
  return {
    port,
    issuer,
    clients: config.clients || [],
    accounts: config.accounts || [],
    rotateRefreshToken: config.rotateRefreshToken ?? true,
  };
}

const config = loadConfig();

// login -> account record; accountId (the OIDC sub) -> login.
const accounts = new Map();
const loginBySub = new Map();
for (const entry of config.accounts) {
  const { login, password, ...claims } = entry;
  const sub = String(claims.sub || login);
  accounts.set(login, {
    login, password: password ?? null, sub, disabled: false,
    claims: { preferred_username: login, ...claims, sub },
  });
  loginBySub.set(sub, login);
}

function sameSecret(given, expected) {
  const a = Buffer.from(String(given ?? ''));
  const b = Buffer.from(String(expected));
  return a.length === b.length && timingSafeEqual(a, b);
}

async function findAccount(ctx, sub) {
  const account = accounts.get(loginBySub.get(sub));
  if (!account || account.disabled) {
    return undefined;
  }
  return {
    accountId: sub,
    async claims() {
      return { ...account.claims };
    },
  };
}

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' };

const provider = new Provider(config.issuer, {
  clients: config.clients,
  findAccount,
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name', 'given_name', 'family_name'],
    email: ['email', 'email_verified'],
  },
  // Put the scope-granted claims (preferred_username …) into the id token itself.
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
  },
  // A refresh token whenever offline_access is granted and the client may refresh.
  async issueRefreshToken(ctx, client, code) {
    return client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access');
  },
  rotateRefreshToken: config.rotateRefreshToken,
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 60,
    IdToken: 3600,
    RefreshToken: 14 * 24 * 3600,
    Interaction: 3600,
    Session: 14 * 24 * 3600,
    Grant: 14 * 24 * 3600,
  },
});

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) {
      throw new Error('request entity too large');
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function page(ctx, status, message) {
  ctx.status = status;
  ctx.type = 'html';
  ctx.body = `<!DOCTYPE html><html><head><title>Test IdP</title></head><body><p class="error">${
    message.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)}</p></body></html>`;
}

// Test-only admin endpoints.
provider.use(async (ctx, next) => {
  if (ctx.path === '/__test__/health') {
    ctx.body = 'ok';
    return;
  }
  const match = /^\/__test__\/(disable|enable)$/.exec(ctx.path);
  if (!match) {
    await next();
    return;
  }
  if (ctx.method !== 'POST') {
    ctx.status = 405;
    return;
  }
  let login;
  try {
    ({ login } = JSON.parse(await readBody(ctx.req)));
  } catch {
    ctx.status = 400;
    ctx.body = { error: 'invalid_request', error_description: 'body must be JSON {"login": …}' };
    return;
  }
  const account = accounts.get(login);
  if (!account) {
    ctx.status = 404;
    ctx.body = { error: 'not_found', error_description: `no account ${login}` };
    return;
  }
  account.disabled = match[1] === 'disable';
  ctx.body = { login, disabled: account.disabled };
});

// Password check in front of the devInteractions login form: the form's `login` names the
// account, `password` must match; the body is handed on with `login` replaced by the account's sub.
provider.use(async (ctx, next) => {
  if (ctx.method !== 'POST' || !/^\/interaction\/[^/]+$/.test(ctx.path)
      || !ctx.is('application/x-www-form-urlencoded')) {
    await next();
    return;
  }
  const form = querystring.parse(await readBody(ctx.req));
  if (form.prompt === 'login') {
    const account = accounts.get(String(form.login ?? ''));
    const passwordOk = account && (account.password === null || sameSecret(form.password, account.password));
    if (!passwordOk || account.disabled) {
      page(ctx, 401, 'Invalid login or password.');
      return;
    }
    form.login = account.sub;
  }
  // oidc-provider reads an already consumed body from req.body.
  ctx.req.body = querystring.stringify(form);
  await next();
});

provider.on('server_error', (ctx, error) => {
  console.error('server_error', ctx.method, ctx.path, error);
});

provider.listen(config.port, '127.0.0.1', () => {
  console.log(`test IdP ${config.issuer} listening on 127.0.0.1:${config.port}`);
});
