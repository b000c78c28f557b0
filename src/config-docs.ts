/** Renders CONFIG_DOCS + schema defaults as the README's markdown table (kept in sync by a test). */
import { CONFIG_DOCS, configSchema } from './config.js';

function defaultOf(key: keyof typeof CONFIG_DOCS): string {
  const parsed = configSchema.shape[key].safeParse(undefined);
  if (!parsed.success || parsed.data === undefined) return '—';
  const text = String(parsed.data);
  return text === '' ? '(empty)' : '`' + text + '`';
}

export function configTableMarkdown(): string {
  const rows = (Object.keys(CONFIG_DOCS) as Array<keyof typeof CONFIG_DOCS>).map(
    (key) => `| \`${key}\` | ${defaultOf(key)} | ${CONFIG_DOCS[key]} |`,
  );
  return ['| Variable | Default | Meaning |', '|---|---|---|', ...rows].join('\n');
}
