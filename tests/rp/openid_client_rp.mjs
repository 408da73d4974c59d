// An independent relying party: node openid-client 6 against a running scitoken-issuer.
//
// Driven by tests/test_rp_openid_client.py over stdin/stdout, one JSON object per line. This
// script is the client: it discovers the issuer, registers itself (RFC 7591), builds the
// authorization URLs and does every token-side step with openid-client's own validation. The
// browser part (sign-in, consent, device approval) is the Python test's: the script prints
// {"event": "authorize", "url"} and reads back {"location"} (the redirect the browser got), or
// prints {"event": "device", ...} and polls while the test approves the user code.
//
// Environment: ISSUER (https URL), REDIRECT_URI (registered), CALLBACK_URI (used: another
// loopback port, RFC 8252 §7.3), NODE_EXTRA_CA_CERTS (the test CA).
import * as readline from 'node:readline';
import * as client from 'openid-client';

const issuer = new URL(process.env.ISSUER);
const registered = process.env.REDIRECT_URI;
const callback = process.env.CALLBACK_URI;
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

function emit(event, data = {}) {
  process.stdout.write(JSON.stringify({ event, ...data }) + '\n');
}

async function browser(url) {
  emit('authorize', { url: url.href });
  const { value } = await lines.next();
  return new URL(JSON.parse(value).location);
}

function header(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[0], 'base64url').toString());
}

function describe(err) {
  return { name: err.name, code: err.code, error: err.error, message: err.message,
           status: err.status, challenges: err.cause?.map?.((c) => ({ scheme: c.scheme, parameters: c.parameters })) };
}

async function codeFlow(config, extra = {}) {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: callback, scope: 'openid email profile offline_access', state, nonce,
    code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', ...extra,
  });
  const location = await browser(url);
  return client.authorizationCodeGrant(config, location, {
    pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true,
  });
}

async function main() {
  // Discovery (OIDC Discovery / RFC 8414) and dynamic registration (RFC 7591).
  const config = await client.dynamicClientRegistration(issuer, {
    client_name: 'openid-client conformance RP', redirect_uris: [registered],
    grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
    token_endpoint_auth_method: 'client_secret_post', scope: 'openid email profile offline_access',
  });
  client.enableNonRepudiationChecks(config); // verify ID-token signatures with the published JWKS
  const meta = config.serverMetadata();
  emit('registered', { client_id: config.clientMetadata().client_id, issuer: meta.issuer,
                       id_token_algs: meta.id_token_signing_alg_values_supported });

  // Authorization code + PKCE; openid-client checks iss (RFC 9207), state, the ID token.
  const tokens = await codeFlow(config);
  emit('tokens', { claims: tokens.claims(), id_token_header: header(tokens.id_token),
                   access_token_header: header(tokens.access_token), scope: tokens.scope,
                   has_refresh_token: Boolean(tokens.refresh_token) });

  const userinfo = await client.fetchUserInfo(config, tokens.access_token, tokens.claims().sub);
  emit('userinfo', { userinfo });

  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  emit('refreshed', { changed: refreshed.access_token !== tokens.access_token,
                      rotated: refreshed.refresh_token !== tokens.refresh_token });

  const live = await client.tokenIntrospection(config, refreshed.access_token);
  await client.tokenRevocation(config, refreshed.access_token);
  const dead = await client.tokenIntrospection(config, refreshed.access_token);
  let afterRevocation = null;
  try {
    await client.fetchUserInfo(config, refreshed.access_token, tokens.claims().sub);
  } catch (err) {
    afterRevocation = describe(err);
  }
  emit('introspection', { before: live, after: dead, userinfo_after_revocation: afterRevocation });

  // Device authorization grant (RFC 8628): the test approves while this polls.
  const device = await client.initiateDeviceAuthorization(config, { scope: 'openid email' });
  emit('device', { user_code: device.user_code, verification_uri: device.verification_uri,
                   verification_uri_complete: device.verification_uri_complete, interval: device.interval });
  const deviceTokens = await client.pollDeviceAuthorizationGrant(config, device);
  emit('device-tokens', { claims: deviceTokens.claims(), id_token_header: header(deviceTokens.id_token),
                          scope: deviceTokens.scope });

  // prompt=none without a session: an error response that openid-client must accept as the
  // issuer's (iss present) and report as login_required.
  let silent = null;
  try {
    await codeFlow(config, { prompt: 'none' });
  } catch (err) {
    silent = describe(err);
  }
  emit('silent', { error: silent });
  emit('done');
}

main().catch((err) => {
  emit('failed', describe(err));
  process.exitCode = 1;
}).finally(() => process.stdin.destroy());
