/**
 * Structured JSON logs (pino). One root logger per process, created by the composition root;
 * components receive a child logger rather than importing a global.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino({
    level,
    base: { service: 'dtl-host', ...bindings },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: { paths: ['req.headers.authorization', 'authorization', '*.secret', 'secret'], censor: '[redacted]' },
  });
}
