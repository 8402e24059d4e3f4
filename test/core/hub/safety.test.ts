// Unit checks of the two guards everything else relies on: file-name safety and token redaction.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { safeJoin, unsafeReason } from '../../../core/hub/paths.ts';
import { readToken, redact, rememberSecret } from '../../../core/hub/config.ts';
import { hubClient } from '../../../core/hub/http.ts';
import { UserError } from '../../../core/errors.ts';

describe('file names from the Hub', () => {
  it('plain relative names pass', () => {
    for (const ok of ['config.json', 'a/b/c.bin', '.gitattributes', 'x..y', 'dir/.hidden', 'ünïcode.txt']) assert.equal(unsafeReason(ok), null, ok);
  });
  it('traversal, absolute, drive, backslash, empty and control names are refused', () => {
    for (const bad of ['..', '../x', 'a/../../x', 'a/..', '/etc/passwd', 'C:/x', 'c:x', 'a\\b', '\\\\host\\share', '', 'a//b', 'a/', './a', 'a\0b', 'a\nb']) {
      assert.notEqual(unsafeReason(bad), null, JSON.stringify(bad));
      assert.throws(() => safeJoin('/base', bad, 'test'), UserError);
    }
    assert.equal(safeJoin('/base', 'a/b.txt', 'test'), '/base/a/b.txt');
  });
});

describe('redaction', () => {
  it('removes known secrets, token-shaped strings and Bearer credentials', () => {
    rememberSecret('hf_registeredSecret42');
    assert.equal(redact('x hf_registeredSecret42 y'), 'x hf_*** y');
    assert.equal(redact('token=hf_AbCdEfGhIjKlMnOp'), 'token=hf_***');
    assert.equal(redact('Authorization: Bearer abc.def-123).'), 'Authorization: Bearer ***).');
    assert.equal(redact('hf-backbones/llama and hf_short'), 'hf-backbones/llama and hf_short');
  });
  it('a malformed token is refused without being printed', () => {
    try {
      readToken({ HF_TOKEN: 'notATokenButASecret123' });
      assert.fail('expected a UserError');
    } catch (e) {
      assert.ok(e instanceof UserError);
      assert.match(e.format(), /from HF_TOKEN does not look like a token/);
      assert.ok(!e.format().includes('notATokenButASecret123'));
    }
  });
  it('HF_TOKEN wins over the token file; an empty HF_TOKEN falls back to the file', () => {
    assert.equal(readToken({ HF_TOKEN: 'hf_fromEnv12345678', HF_HOME: '/nonexistent' })?.source, 'HF_TOKEN');
    assert.equal(readToken({ HF_TOKEN: '', HF_HOME: '/nonexistent' }), undefined);
  });
});

describe('endpoint', () => {
  it('a token sent over plain http to another machine is warned about (this machine is fine)', () => {
    const warned: string[] = [];
    hubClient({ token: 'hf_someToken12345678', endpoint: 'http://hub.example.invalid', log: (m) => warned.push(m) });
    assert.match(warned.join(''), /plain http on another machine/);
    assert.ok(!warned.join('').includes('hf_someToken12345678'));
    const quiet: string[] = [];
    for (const endpoint of ['http://127.0.0.1:8080', 'http://localhost:1', 'https://huggingface.co']) {
      hubClient({ token: 'hf_someToken12345678', endpoint, log: (m) => quiet.push(m) });
    }
    hubClient({ token: null, endpoint: 'http://hub.example.invalid', log: (m) => quiet.push(m) });
    assert.deepEqual(quiet, []);
  });
});
