// Where the read-only reference data lives (../shared beside the checkout) and how tests skip
// with a clear message when it is absent (a user's fresh clone). CI always has it.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const SHARED = process.env.NANOVLM_SHARED ?? resolve(REPO_ROOT, '..', 'shared');
export const FIXTURES = join(SHARED, 'fixtures', 'nanovlm');
export const DATA = join(SHARED, 'data');

/** `{ skip: message }` for node:test when a shared path is missing, else `{}`. */
export function needsShared(...parts: string[]): { skip?: string } {
  const p = join(SHARED, ...parts);
  return existsSync(p) ? {} : { skip: `needs ${p} (the ../shared reference data beside the checkout; CI has it)` };
}
