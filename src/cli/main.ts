/**
 * `dtl-host` entry point: a subcommand dispatcher. Each subcommand lives in its own module and
 * registers below; it parses its own arguments (node:util parseArgs) and writes its result to
 * stdout. Failures become one line on stderr and a non-zero exit code — never a stack trace.
 */
import { parseArgs } from 'node:util';
import { isAppError } from '../errors.js';
import { CommandExit, UsageError, type Command } from './command.js';

interface Entry {
  name: string;
  summary: string;
  /** Imported only when this command runs: one command's dependencies never slow another's start. */
  load: () => Promise<Command>;
}

/**
 * Add new subcommands (serve, train, …) here. Inside a command module, load heavy parts (tfjs,
 * db) in run() where possible, so its --help and usage errors answer quickly too.
 */
const COMMANDS: Entry[] = [
  { name: 'predict', summary: 'classify images with one adapter; prints JSON', load: async () => (await import('./predict.js')).predictCommand },
  { name: 'train', summary: 'train an adapter locally from a data set zip or folder', load: async () => (await import('./train.js')).trainCommand },
  { name: 'backbone', summary: 'pull a backbone from the model hub into the blob store', load: async () => (await import('./backbone.js')).backboneCommand },
  { name: 'worker', summary: 'run training workers without the HTTP server', load: async () => (await import('./worker.js')).workerCommand },
];

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
  const entry = COMMANDS.find((c) => c.name === name);
  if (!entry) {
    process.stderr.write(`dtl-host: unknown command '${name}' (commands: ${COMMANDS.map((c) => c.name).join(', ')}; see 'dtl-host --help')\n`);
    return 2;
  }
  try {
    const command = await entry.load();
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
    if (err instanceof CommandExit) {
      process.stderr.write(`dtl-host ${name}: ${err.message}\n`);
      return err.exitCode;
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
