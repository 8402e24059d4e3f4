// File names that come from the Hub (a repo listing) are untrusted: a malicious repo could list
// "../../.bashrc" or "/etc/passwd". Every name is checked here before it touches the disk, and the
// joined path is checked once more to lie inside its base folder.
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { UserError } from '../errors.ts';

/** Why `name` is not a safe repo-relative file name, or null when it is. */
export function unsafeReason(name: string): string | null {
  if (typeof name !== 'string' || name.length === 0) return 'empty name';
  if (name.length > 1024) return 'name longer than 1024 characters';
  if (name.includes('\0')) return 'NUL character';
  if (name.includes('\\')) return 'backslash (a Windows path separator)';
  if (name.startsWith('/') || isAbsolute(name)) return 'absolute path';
  if (/^[A-Za-z]:/.test(name)) return 'drive letter';
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f]/.test(name)) return 'control character';
  const parts = name.split('/');
  if (parts.includes('..')) return '".." segment';
  if (parts.includes('.')) return '"." segment';
  if (parts.some((p) => p === '')) return 'empty segment ("//" or trailing "/")';
  return null;
}

/**
 * `base/name` for a repo file name, refusing anything that would land outside `base`.
 * `what` names the source for the message (e.g. "the listing of owner/name").
 */
export function safeJoin(base: string, name: string, what: string): string {
  const reason = unsafeReason(name);
  const target = resolve(join(base, name));
  const rel = relative(resolve(base), target);
  if (reason || rel === '' || rel.startsWith('..') || isAbsolute(rel) || rel.split(sep).includes('..')) {
    throw new UserError(
      `refusing file name ${JSON.stringify(name)} from ${what}: ${reason ?? 'it resolves outside the cache folder'}`,
      { hint: 'a repo file name must be a plain relative path; nothing was written. Report the repo to its owner.' },
    );
  }
  return target;
}
