import { assertEquals } from "../assert.ts";
import { checksumAdd, checksumFinish, internetChecksum, pseudoHeaderSum } from "../../wire/mod.ts";
import { v4, v6 } from "./helpers.ts";

Deno.test("internet checksum: RFC 1071 example and odd length", () => {
  // RFC 1071 section 3: the sum of 0001 f203 f4f5 f6f7 is ddf2, so the checksum is 220d.
  assertEquals(
    internetChecksum(new Uint8Array([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7])),
    0x220d,
  );
  // An odd trailing byte is padded with zero on the right.
  assertEquals(internetChecksum(new Uint8Array([0x01])), 0xfeff);
  assertEquals(internetChecksum(new Uint8Array(0)), 0xffff);
});

Deno.test("internet checksum: data including its own checksum sums to 0", () => {
  const data = new Uint8Array([
    0x45,
    0,
    0,
    0x1c,
    0x12,
    0x34,
    0,
    0,
    0x40,
    0x11,
    0,
    0,
    10,
    0,
    0,
    1,
    10,
    0,
    0,
    2,
  ]);
  const c = internetChecksum(data);
  data[10] = c >> 8;
  data[11] = c & 0xff;
  assertEquals(internetChecksum(data), 0);
});

Deno.test("pseudo-headers: v4 and v6 sums fold into the same checksum as a flat buffer", () => {
  const src4 = v4("10.0.0.1");
  const dst4 = v4("10.0.0.2");
  const flat4 = new Uint8Array([...src4, ...dst4, 0, 17, 0, 12]);
  assertEquals(checksumFinish(pseudoHeaderSum(src4, dst4, 17, 12)), internetChecksum(flat4));
  const src6 = v6("fe80::1");
  const dst6 = v6("ff02::1:2");
  const flat6 = new Uint8Array([...src6, ...dst6, 0, 1, 0, 4, 0, 0, 0, 58]);
  assertEquals(checksumFinish(pseudoHeaderSum(src6, dst6, 58, 0x10004)), internetChecksum(flat6));
  assertEquals(checksumFinish(checksumAdd(0, flat6)), internetChecksum(flat6));
});
