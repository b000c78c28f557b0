/** What a `dtl-host` subcommand provides to the dispatcher in main.ts. */
export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: false;
}

export interface Command {
  name: string;
  /** One line for `dtl-host --help`. */
  summary: string;
  /** Full usage text for `dtl-host <name> --help` and usage errors. */
  usage: string;
  options: Record<string, OptionSpec>;
  run(values: Record<string, string | boolean | undefined>, positionals: string[]): Promise<void>;
}

/** Bad command-line usage: exit code 2 and the command's usage text. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Ends a command with its own exit code and one message line (e.g. 130 after Ctrl-C). */
export class CommandExit extends Error {
  override name = 'CommandExit';
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}
