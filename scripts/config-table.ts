/**
 * Rewrites the README's configuration table (between the config-table markers) from the config
 * schema: `npm run docs:config`. A test fails when the README is out of date.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { configTableMarkdown } from '../src/config-docs.js';

const start = '<!-- config-table:start -->';
const end = '<!-- config-table:end -->';
const readme = readFileSync('README.md', 'utf8');
const i = readme.indexOf(start);
const j = readme.indexOf(end);
if (i < 0 || j < i) throw new Error('README.md lacks the config-table markers');
writeFileSync('README.md', readme.slice(0, i + start.length) + '\n' + configTableMarkdown() + '\n' + readme.slice(j));
