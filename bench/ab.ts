// The A/B loop of the benches that time one switch on and off in ONE process (bench/native-direct.ts,
// bench/native-norm.ts): an environment variable read at each call (e.g. VLM_NATIVE_NORM) is unset
// ("on") or set to 0 ("off") around the work; every round times both sides, alternating, so that
// both see the same load on a shared machine. CPU ms (process.cpuUsage) and wall ms, medians.

/** run f with the switch `key` on (unset) or off (=0); returns [CPU ms, wall ms, f's result] */
export async function switchTimed(key: string, on: boolean, f: () => unknown): Promise<[number, number, unknown]> {
  if (on) delete process.env[key];
  else process.env[key] = '0';
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const r = await f();
  const wall = performance.now() - t0;
  const c = process.cpuUsage(c0);
  delete process.env[key];
  return [(c.user + c.system) / 1000, wall, r];
}

const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1];

/** one warm-up of each side, then `rounds` alternating rounds per work; a table row per work:
 *  | label | CPU on | CPU off | off / on (CPU) | wall on | wall off | */
export async function abRows(key: string, work: [string, () => unknown][], rounds: number): Promise<string[]> {
  const rows: string[] = [];
  for (const [label, f] of work) {
    await switchTimed(key, true, f);
    await switchTimed(key, false, f);
    const cpu: [number[], number[]] = [[], []];
    const wall: [number[], number[]] = [[], []];
    for (let r = 0; r < rounds; r++)
      for (const side of [0, 1]) {
        const [c, w] = await switchTimed(key, side === 0, f);
        cpu[side].push(c);
        wall[side].push(w);
      }
    const [c0, c1, w0, w1] = [median(cpu[0]), median(cpu[1]), median(wall[0]), median(wall[1])];
    rows.push(`| ${label} | ${c0.toFixed(1)} | ${c1.toFixed(1)} | ${(c1 / c0).toFixed(2)}× | ${w0.toFixed(1)} | ${w1.toFixed(1)} |`);
  }
  return rows;
}
