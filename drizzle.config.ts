import { defineConfig } from 'drizzle-kit';

// `npm run db:generate` writes a new migration under drizzle/ from src/db/schema.ts. The folder is
// checked in and applied by src/db/open.ts at start, on PGlite and PostgreSQL alike.
export default defineConfig({
  dialect: 'postgresql',
  schema: './src/db/schema.ts',
  out: './drizzle',
});
