// Where each value of a recipe came from: YAML path -> file:line:col. Built from the YAML source
// positions of every file in the `extends` chain, so an error in an extended file points at it.
import { isMap, isPair, isScalar, isSeq, type Document, type LineCounter, type Node } from 'yaml';
import type { Where } from '../errors.ts';

export type PathSeg = string | number;

export interface Position {
  file: string;
  line: number;
  col: number;
  /** position of the key (for "unknown key" messages); same as the value for list items */
  keyLine: number;
  keyCol: number;
  kind: 'map' | 'seq' | 'scalar';
}

/** ['data', 'train', 0, 'limit'] -> "data.train[0].limit" */
export function formatPath(path: readonly PathSeg[]): string {
  let s = '';
  for (const seg of path) s += typeof seg === 'number' ? `[${seg}]` : s ? `.${seg}` : seg;
  return s;
}

/** "data.train[0].limit" -> ['data', 'train', 0, 'limit'] (undefined when malformed) */
export function parsePath(s: string): PathSeg[] | undefined {
  const out: PathSeg[] = [];
  const re = /([^.[\]]+)|\[(\d+)\]|(\.)/gy;
  let expectKey = true;
  let m: RegExpExecArray | null;
  let last = 0;
  while ((m = re.exec(s))) {
    last = re.lastIndex;
    if (m[1] !== undefined) {
      if (!expectKey) return undefined;
      out.push(m[1]);
      expectKey = false;
    } else if (m[2] !== undefined) {
      if (out.length === 0) return undefined;
      out.push(Number(m[2]));
      expectKey = false;
    } else {
      if (expectKey) return undefined;
      expectKey = true;
    }
  }
  if (last !== s.length || expectKey || out.length === 0) return undefined;
  return out;
}

export class SourceMap {
  private readonly map = new Map<string, Position>();
  /** overrides given on the command line: path -> "override a.b=c" */
  readonly overrides = new Map<string, string>();

  /** Record every node of a parsed document. */
  static fromDocument(doc: Document, lc: LineCounter, file: string): SourceMap {
    const sm = new SourceMap();
    const pos = (offset: number | undefined) => lc.linePos(offset ?? 0);
    const walk = (node: Node | null | undefined, path: PathSeg[], keyOffset: number | undefined) => {
      if (!node) return;
      const v = pos(node.range?.[0]);
      const k = keyOffset === undefined ? v : pos(keyOffset);
      const kind = isMap(node) ? 'map' : isSeq(node) ? 'seq' : 'scalar';
      sm.map.set(formatPath(path), { file, line: v.line, col: v.col, keyLine: k.line, keyCol: k.col, kind });
      if (isMap(node)) {
        for (const pair of node.items) {
          if (!isPair(pair)) continue;
          const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
          const keyNode = pair.key as Node | null;
          const valueNode = (pair.value as Node | null) ?? keyNode;
          walk(valueNode, [...path, key], keyNode?.range?.[0]);
        }
      } else if (isSeq(node)) {
        node.items.forEach((item, i) => walk(item as Node, [...path, i], undefined));
      }
    };
    walk(doc.contents as Node, [], undefined);
    return sm;
  }

  /** Layer `child` over this map (extends: deep merge, the child wins, lists are replaced). */
  overlay(child: SourceMap): void {
    for (const [p, v] of child.map) {
      // a child list or scalar replaces everything the base had below that path
      const hidden = v.kind === 'map' ? [p + '['] : [p + '.', p + '['];
      if (p !== '') for (const q of [...this.map.keys()]) if (hidden.some((h) => q.startsWith(h))) this.map.delete(q);
      this.map.set(p, v);
    }
  }

  set(path: string, pos: Position): void {
    this.map.set(path, pos);
  }

  /** The closest recorded position for a path (walking up to its parents). */
  lookup(path: readonly PathSeg[] | string, opts: { key?: boolean } = {}): Where {
    let segs = typeof path === 'string' ? (parsePath(path) ?? []) : [...path];
    const yamlPath = formatPath(segs);
    for (;;) {
      const p = formatPath(segs);
      const ov = this.overrides.get(p);
      if (ov !== undefined) return { file: ov, yamlPath };
      const pos = this.map.get(p);
      if (pos) {
        const exact = segs.length === (typeof path === 'string' ? (parsePath(path) ?? []).length : path.length);
        const useKey = opts.key && exact;
        return { file: pos.file, line: useKey ? pos.keyLine : pos.line, col: useKey ? pos.keyCol : pos.col, yamlPath };
      }
      if (segs.length === 0) return { yamlPath };
      segs = segs.slice(0, -1);
    }
  }

  /** the file the top of the recipe came from */
  get rootFile(): string | undefined {
    return this.map.get('')?.file;
  }
}
