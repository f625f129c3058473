/** Runs the vhost tests and the fast path's again in a subprocess on the ASan+UBSan build of the shim, so a
 * memory error the normal build hides still fails the suite. */
import { assertEquals } from "../assert.ts";

const root = new URL("../../", import.meta.url).pathname;
const ASAN_FILES = [
  ...["adopt", "control", "hostile", "offload", "traffic"].map((f) => `tests/vhost/${f}_test.ts`),
  // The forwarding fast path parses guest frames and writes other vNICs' rings.
  "tests/ffi/fastpath_test.ts",
];

Deno.test({
  name: "vhost tests pass on the ASan+UBSan shim",
  // Already running on the ASan build: the outer run covers it.
  ignore: Deno.env.get("MVIRT_NET_SHIM") === "asan",
  async fn() {
    const build = await new Deno.Command(`${root}scripts/build-shim.sh`, { args: ["asan"] })
      .output();
    assertEquals(build.code, 0, "scripts/build-shim.sh asan");
    const libasan = new TextDecoder().decode(
      (await new Deno.Command("gcc", { args: ["-print-file-name=libasan.so"], stdout: "piped" })
        .output()).stdout,
    ).trim();
    const run = await new Deno.Command(`${root}scripts/deno`, {
      // Everything but the real-QEMU test, which takes 20 s and exercises no other native path.
      args: ["test", "-A", "--no-check", ...ASAN_FILES],
      cwd: root,
      env: {
        LD_PRELOAD: libasan,
        // Deno itself is not built for LeakSanitizer; memory errors still abort.
        ASAN_OPTIONS: "detect_leaks=0:abort_on_error=1",
        UBSAN_OPTIONS: "halt_on_error=1:print_stacktrace=1",
        MVIRT_NET_SHIM: "asan",
        NO_COLOR: "1",
      },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const out = new TextDecoder().decode(run.stdout) + new TextDecoder().decode(run.stderr);
    assertEquals(run.code, 0, `under ASan:\n${out.split("\n").slice(-40).join("\n")}`);
    assertEquals(/Sanitizer/.test(out), false, "no sanitizer report");
  },
});
