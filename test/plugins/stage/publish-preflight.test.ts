// The publish stage checks its hub publishers when the run starts (stages are created before
// training), so a publish that cannot work is reported before hours of training, not after.
import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import publishStage from '../../../plugins/stage/publish.ts';
import { UserError } from '../../../core/errors.ts';

const saved = { ...process.env };
afterEach(() => {
  process.env = { ...saved };
});

function create(publish: Record<string, unknown>): string[] {
  const warnings: string[] = [];
  const log = { info() {}, debug() {}, warn: (m: string) => warnings.push(m) };
  publishStage.create({} as never, { recipe: { name: 'x', publish }, log } as never);
  return warnings;
}

describe('publish preflight', () => {
  it('a hub publisher without a repo id, or with a bad one, fails at once with its YAML path', () => {
    process.env.HF_TOKEN = 'hf_someValidLookingToken123';
    assert.throws(() => create({ publishers: [{ use: 'local' }, { use: 'hub' }] }), (e: unknown) => {
      assert.ok(e instanceof UserError);
      assert.equal(e.where.yamlPath, 'publish.publishers[1].repo_id');
      return true;
    });
    assert.throws(() => create({ repo_id: 'not a repo', publishers: [{ use: 'hub' }] }), (e: unknown) => {
      assert.ok(e instanceof UserError && e.where.yamlPath === 'publish.repo_id' && /not a Hub repo id/.test(e.message));
      return true;
    });
    assert.throws(() => create({ publishers: [{ use: 'hub', repo_id: 'a/b@dev' }] }), UserError);
    assert.deepEqual(create({ repo_id: 'alice/m', publishers: [{ use: 'hub' }] }), []);
  });
  it('no token or HF_HUB_OFFLINE: a warning (a --dry-run needs neither)', () => {
    delete process.env.HF_TOKEN;
    process.env.HF_HOME = '/nonexistent-hf-home';
    process.env.HF_HUB_OFFLINE = '1';
    const w = create({ publishers: [{ use: 'hub', repo_id: 'alice/m' }] });
    assert.equal(w.length, 2);
    assert.match(w.join('\n'), /HF_HUB_OFFLINE is set[\s\S]*no Hugging Face token/);
  });
  it('a malformed token is a warning that does not print it', () => {
    process.env.HF_TOKEN = 'plainSecretValue123456';
    const w = create({ publishers: [{ use: 'hub', repo_id: 'alice/m' }] });
    assert.match(w.join('\n'), /does not look like a token/);
    assert.ok(!w.join('\n').includes('plainSecretValue123456'));
  });
});
