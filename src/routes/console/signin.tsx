/** @jsxRuntime automatic @jsxImportSource hono/jsx */
/** /console: sign in with a tenant API key, or with the admin token. */
import { Field, Layout } from './layout.js';

export function SignInPage() {
  return (
    <Layout title="Sign in" page="signin">
      <p>
        The key stays in this browser tab (sessionStorage) and is sent only as the <code>Authorization</code> header to this
        server's <a href="/docs">/v1 API</a>. Closing the tab forgets it.
      </p>
      <div class="cols">
        <form id="signin-form" class="card" method="post" action="/console" autocomplete="off">
          <h2>Tenant API key</h2>
          <Field id="signin-key" label="API key" hint="dtl_<prefix>_<secret>, as created under Keys or by an administrator.">
            <input id="signin-key" type="password" required autocomplete="off" spellcheck={false} aria-describedby="signin-key-hint" />
          </Field>
          <button type="submit">Sign in</button>
          <p id="signin-error" class="error" role="alert"></p>
        </form>
        <form id="admin-form" class="card" method="post" action="/console" autocomplete="off">
          <h2>Administrator</h2>
          <Field id="admin-token" label="Admin token" hint="The deployment's ADMIN_TOKEN: manage tenants and their keys.">
            <input id="admin-token" type="password" required autocomplete="off" spellcheck={false} aria-describedby="admin-token-hint" />
          </Field>
          <button type="submit">Sign in as administrator</button>
          <p id="admin-error" class="error" role="alert"></p>
        </form>
      </div>
    </Layout>
  );
}
