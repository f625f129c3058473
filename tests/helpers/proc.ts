/**
 * What the tests read of a running process in /proc.
 * @module
 */

/** A `kB` field of /proc/<pid>/status (`VmRSS`, `RssAnon`, …), in KiB; throws when it is missing. */
export function statusKib(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(
    Deno.readTextFileSync(`/proc/${pid}/status`),
  );
  if (!m) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(m[1]);
}
