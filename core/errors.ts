// Errors a user can act on. A UserError is printed without a stack trace (unless --debug):
// what went wrong, where (file:line:col, YAML path, tensor or sample name), and what to do.

export interface Where {
  file?: string;
  line?: number; // 1-based
  col?: number; // 1-based
  yamlPath?: string; // e.g. "data.train[0].limit"
}

export class UserError extends Error {
  readonly where: Where;
  readonly hint?: string;
  constructor(message: string, opts: { where?: Where; hint?: string; cause?: unknown } = {}) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = 'UserError';
    this.where = opts.where ?? {};
    this.hint = opts.hint;
  }
  /** "file:line:col yaml.path: message\n  hint" */
  format(): string {
    const w = this.where;
    // a message that already starts with the file (e.g. "model.safetensors: not a valid ...") is not prefixed twice
    const repeated = !!w.file && !w.line && this.message.startsWith(w.file);
    let loc = repeated ? '' : (w.file ?? '');
    if (w.file && w.line) loc += `:${w.line}` + (w.col ? `:${w.col}` : '');
    if (w.yamlPath) loc += (loc ? ' ' : '') + w.yamlPath;
    return (loc ? `${loc}: ` : '') + this.message + (this.hint ? `\n  -> ${this.hint}` : '');
  }
}

/** Several user errors reported together (e.g. every recipe validation problem at once). */
export class UserErrors extends Error {
  constructor(readonly errors: UserError[]) {
    super(errors.map((e) => e.format()).join('\n'));
    this.name = 'UserErrors';
  }
}

export function isUserError(e: unknown): e is UserError | UserErrors {
  return e instanceof UserError || e instanceof UserErrors;
}
