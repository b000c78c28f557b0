/**
 * `dtl-host` entry point: a subcommand dispatcher. Each subcommand lives in its own module and
 * registers below; it parses its own arguments (node:util parseArgs) and writes its result to
 * stdout. Failures become one line on stderr and a non-zero exit code — never a stack trace.
 */
import { parseArgs } from 'node:util';
import { isAppError } from '../errors.js';
import { predictCommand } from './predict.js';
import { workerCommand } from './worker.js';
import { UsageError, type Command } from './command.js';

/** Add new subcommands (worker, serve, train, …) here. */
const COMMANDS: Command[] = [predictCommand, workerCommand];

function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'usage: dtl-host <command> [options]',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    "run 'dtl-host <command> --help' for a command's options",
  ].join('\n');
}

export async function runCli(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? process.stderr : process.stdout).write(`${usage()}\n`);
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) {
    process.stderr.write(`dtl-host: unknown command '${name}'\n${usage()}\n`);
    return 2;
  }
  try {
    // Lets each command declare its options declaratively; --help is common to all.
    const parsed = parseArgs({
      args: rest,
      options: { ...command.options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
    if (parsed.values.help) {
      process.stdout.write(`${command.usage}\n`);
      return 0;
    }
    await command.run(parsed.values as Record<string, string | boolean | undefined>, parsed.positionals);
    return 0;
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`dtl-host ${name}: ${(err as Error).message} (see 'dtl-host ${name} --help')\n`);
      return 2;
    }
    if (isAppError(err)) {
      process.stderr.write(`dtl-host ${name}: ${err.message} (${err.code})\n`);
      return 1;
    }
    const message = String((err as Error)?.message ?? err).split('\n')[0];
    process.stderr.write(`dtl-host ${name}: unexpected error: ${message}\n`);
    return 1;
  }
}

process.exitCode = await runCli(process.argv.slice(2));
