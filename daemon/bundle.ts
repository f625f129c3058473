/**
 * The vNIC actor as one JavaScript file, made by the root at every start.
 *
 * Every vNIC is a Worker, and every Worker loads the vNIC actor's module graph (about 50
 * TypeScript modules) into its own isolate. Loaded module by module, the graph costs each Worker
 * about 2.8 MiB (Deno keeps each module's emitted JavaScript with its inline source map) and about
 * 18 ms; loaded as one bundle, 0.9 MiB and 7 ms (docs/performance-control.md). The root makes the
 * bundle with `deno bundle` before it starts the dataplane, from the sources it runs, so the bundle
 * is never older than the code; the source map is a separate file (`--sourcemap=linked`), which
 * Deno reads only to print a stack trace, so errors still name the TypeScript lines.
 *
 * A bundle that cannot be made is not fatal: the dataplane then starts the TypeScript module (a
 * warning says so), which works the same and costs the memory above.
 * @module
 */

import type { Logger } from "./log.ts";

const ROOT_DIR = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
/** The vNIC actor's entry module. */
export const VNIC_ENTRY = `${ROOT_DIR}/actors/vnic.ts`;
/**
 * Environment variable through which the root tells the dataplane where the bundle is; unset,
 * the dataplane starts {@link VNIC_ENTRY}.
 */
export const VNIC_BUNDLE_ENV = "MVIRT_NET_VNIC_BUNDLE";
/** A bundle that takes longer than this is given up (the TypeScript module is used). */
const BUNDLE_TIMEOUT_MS = 60_000;

/** The bundle's path under the data directory. */
export function vnicBundlePath(dataDir: string): string {
  return `${dataDir}/bundle/vnic.js`;
}

/**
 * Bundles {@link VNIC_ENTRY} into {@link vnicBundlePath}; resolves with the bundle's path, or
 * null (logged) when `deno bundle` failed.
 */
export async function bundleVnicActor(dataDir: string, log: Logger): Promise<string | null> {
  const out = vnicBundlePath(dataDir);
  const tmp = `${dataDir}/bundle/.vnic.${Deno.pid}.js`;
  const started = performance.now();
  try {
    Deno.mkdirSync(`${dataDir}/bundle`, { recursive: true });
    const r = await new Deno.Command(Deno.execPath(), {
      args: [
        "bundle",
        "--quiet",
        `--config=${ROOT_DIR}/deno.json`,
        // The graph has no npm or remote imports; the lock file is not this command's to write.
        "--no-lock",
        "--no-remote",
        "--platform=deno",
        "--sourcemap=linked",
        `--output=${tmp}`,
        VNIC_ENTRY,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(BUNDLE_TIMEOUT_MS),
    }).output();
    if (!r.success) {
      const err = new TextDecoder().decode(r.stderr).trim().split("\n").slice(-5).join(" | ");
      throw new Error(`deno bundle exited ${r.code}: ${err}`);
    }
    // The map is named after the file it maps; renaming the pair keeps the link valid only if the
    // comment names the final file, so rewrite it.
    const code = Deno.readTextFileSync(tmp).replace(
      /\/\/# sourceMappingURL=\S+\s*$/,
      "//# sourceMappingURL=vnic.js.map\n",
    );
    Deno.writeTextFileSync(tmp, code);
    Deno.renameSync(`${tmp}.map`, `${out}.map`);
    Deno.renameSync(tmp, out);
    log.info("vNIC actor bundled", {
      path: out,
      kib: Math.round(code.length / 1024),
      ms: Math.round(performance.now() - started),
    });
    return out;
  } catch (e) {
    for (const leftover of [tmp, `${tmp}.map`]) {
      try {
        Deno.removeSync(leftover);
      } catch {
        // Not written.
      }
    }
    log.warn("cannot bundle the vNIC actor; vNICs load the TypeScript modules (more memory)", {
      error: (e as Error).message,
    });
    return null;
  }
}
