import { assertEquals } from "../assert.ts";
import { ensureSafeUmask, shareSocket } from "../../daemon/socket_access.ts";

Deno.test("ensureSafeUmask adds the group and other write bits, never clears any", () => {
  const saved = Deno.umask();
  try {
    Deno.umask(0o000);
    assertEquals(ensureSafeUmask(), 0o022, "a permissive umask is tightened");
    Deno.umask(0o027);
    assertEquals(ensureSafeUmask(), 0o027, "a stricter umask is kept");
    Deno.umask(0o002);
    assertEquals(ensureSafeUmask(), 0o022);
    assertEquals(Deno.umask(), 0o022, "and it is the process umask");
  } finally {
    Deno.umask(saved);
  }
});

Deno.test("a socket bound under that umask is the owner's until shareSocket opens it to the group", () => {
  const saved = Deno.umask(0o000);
  const dir = Deno.makeTempDirSync();
  const path = `${dir}/s.sock`;
  try {
    ensureSafeUmask();
    const l = Deno.listen({ transport: "unix", path });
    try {
      assertEquals(Deno.statSync(path).mode! & 0o022, 0, "born without group/other write");
      shareSocket(path, null);
      assertEquals(Deno.statSync(path).mode! & 0o777, 0o660);
    } finally {
      l.close();
    }
  } finally {
    Deno.umask(saved);
    Deno.removeSync(dir, { recursive: true });
  }
});
