// Where a model or dataset comes from: a local folder, or a Hub repo id `owner/name[@revision]`
// downloaded into the Hugging Face cache ($HF_HOME/hub, the Hub's own layout). This first
// version resolves local paths; the Hub download lands in the same function.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { UserError } from '../errors.ts';

export interface ResolveOptions {
  repoType?: 'model' | 'dataset';
  /** which files of the repo to fetch: a list of paths or a predicate (default: all) */
  files?: string[] | ((path: string) => boolean);
  /** branch, tag or commit; overrides an `@revision` in the id */
  revision?: string;
}

// Hub rule for each half of `owner/name`: letters, digits, '-', '_', '.'; no leading/trailing
// '-' or '.', no '--' or '..'; at most 96 characters.
const NAME = /^(?![-.])(?!.*(--|\.\.))[A-Za-z0-9._-]{1,96}(?<![-.])$/;

/** Split `owner/name[@revision]`; null when `s` is not a repo id. */
export function parseRepoId(s: string): { repo: string; revision?: string } | null {
  const at = s.indexOf('@');
  const repo = at >= 0 ? s.slice(0, at) : s;
  const revision = at >= 0 ? s.slice(at + 1) : undefined;
  if (revision !== undefined && !/^[A-Za-z0-9._\-/]{1,200}$/.test(revision)) return null;
  const parts = repo.split('/');
  if (parts.length !== 2 || !parts.every((p) => NAME.test(p))) return null;
  return { repo, revision };
}

/** True for `owner/name` or `owner/name@revision` (Hub naming rules). */
export function isRepoId(s: string): boolean {
  return parseRepoId(s) !== null;
}

/**
 * A local folder holding the source: an existing path is returned as an absolute path; a repo id
 * is downloaded into the cache (or found there) and its snapshot folder returned.
 */
export async function resolveSource(idOrPath: string, opts: ResolveOptions = {}): Promise<string> {
  const local = resolve(idOrPath);
  if (existsSync(local)) return local;
  if (!isRepoId(idOrPath)) {
    throw new UserError(`"${idOrPath}" is neither an existing path nor a Hub repo id (owner/name[@revision])`, {
      hint: 'check the path (relative paths resolve against the current directory) or write the repo id as owner/name',
    });
  }
  throw new UserError(`downloading ${opts.repoType ?? 'model'} repo ${idOrPath} from the Hub is not implemented yet`);
}
