/** The pure vhost-user codec: every payload shape round-trips, and what a frontend controls
 * (version, sizes, fd counts, reserved bits) is checked. */
import { assertEquals, assertThrows } from "../assert.ts";
import {
  configPayload,
  decodeMessage,
  encodeMessage,
  encodeReply,
  FLAG_NEED_REPLY,
  FLAG_REPLY,
  memRegionPayload,
  memTablePayload,
  ProtocolError,
  Request,
  requestName,
  u64Payload,
  vringAddrPayload,
  vringFilePayload,
  vringStatePayload,
} from "../../vhost/protocol.ts";

const REGION = {
  guestPhysAddr: 0x1000n,
  memorySize: 0x2000n,
  userspaceAddr: 0x7f00n,
  mmapOffset: 0x10n,
};

Deno.test("payloads decode to what was encoded", () => {
  assertEquals(
    decodeMessage(encodeMessage(Request.SET_FEATURES, FLAG_NEED_REPLY, u64Payload(5n)), 0),
    {
      request: Request.SET_FEATURES,
      flags: 1 | FLAG_NEED_REPLY,
      needReply: true,
      payload: { kind: "u64", value: 5n },
    },
  );
  assertEquals(
    decodeMessage(encodeMessage(Request.SET_VRING_NUM, 0, vringStatePayload(1, 256)), 0).payload,
    {
      kind: "vring_state",
      index: 1,
      num: 256,
    },
  );
  assertEquals(
    decodeMessage(
      encodeMessage(
        Request.SET_VRING_ADDR,
        0,
        vringAddrPayload(1, { desc: 1n, used: 2n, avail: 3n }),
      ),
      0,
    )
      .payload,
    { kind: "vring_addr", index: 1, flags: 0, desc: 1n, used: 2n, avail: 3n, log: 0n },
  );
  assertEquals(
    decodeMessage(encodeMessage(Request.SET_VRING_CALL, 0, vringFilePayload(1, true)), 0).payload,
    {
      kind: "vring_file",
      index: 1,
      noFd: true,
    },
  );
  assertEquals(
    decodeMessage(encodeMessage(Request.SET_MEM_TABLE, 0, memTablePayload([REGION, REGION])), 2)
      .payload,
    {
      kind: "mem_table",
      regions: [REGION, REGION],
    },
  );
  assertEquals(
    decodeMessage(encodeMessage(Request.ADD_MEM_REG, 0, memRegionPayload(REGION)), 1).payload,
    {
      kind: "mem_region",
      region: REGION,
    },
  );
  const cfg =
    decodeMessage(encodeMessage(Request.GET_CONFIG, 0, configPayload(4, new Uint8Array([1, 2]))), 0)
      .payload;
  assertEquals(cfg, { kind: "config", offset: 4, size: 2, flags: 0, data: new Uint8Array([1, 2]) });
});

Deno.test("replies carry the reply flag and the version", () => {
  const r = encodeReply(Request.GET_FEATURES, u64Payload(1n));
  const v = new DataView(r.buffer);
  assertEquals([v.getUint32(0, true), v.getUint32(4, true), v.getUint32(8, true)], [
    1,
    1 | FLAG_REPLY,
    8,
  ]);
  assertThrows(() => decodeMessage(r, 0), ProtocolError, "reply flag on a request");
});

Deno.test("malformed messages name what is wrong", () => {
  const cases: [Uint8Array, number, string][] = [
    [new Uint8Array(5), 0, "shorter than its header"],
    [encodeMessage(77, 0, new Uint8Array(0)), 0, "request 77 is not supported"],
    [
      encodeMessage(Request.SET_VRING_BASE, 0, new Uint8Array(12)),
      0,
      "payload of 12 bytes, expected 8",
    ],
    [
      encodeMessage(Request.SET_VRING_KICK, 0, vringFilePayload(0, true)),
      1,
      "expected 0 fds, got 1",
    ],
    [encodeMessage(Request.SET_VRING_KICK, 0, u64Payload(1n << 20n)), 0, "reserved bits"],
    [
      encodeMessage(Request.SET_MEM_TABLE, 0, memTablePayload([REGION])),
      0,
      "expected 1 fds, got 0",
    ],
    [encodeMessage(Request.ADD_MEM_REG, 0, memRegionPayload(REGION)), 0, "expected 1 fds"],
    [
      encodeMessage(Request.GET_CONFIG, 0, configPayload(0, new Uint8Array(300))),
      0,
      "config size 300",
    ],
  ];
  for (const [bytes, fds, reason] of cases) {
    assertThrows(() => decodeMessage(bytes, fds), ProtocolError, reason);
  }
  const truncated = encodeMessage(Request.SET_FEATURES, 0, u64Payload(1n)).subarray(0, 16);
  assertThrows(
    () => decodeMessage(truncated, 0),
    ProtocolError,
    "header says 8 payload bytes, got 4",
  );
  const table = memTablePayload([REGION]);
  new DataView(table.buffer).setUint32(0, 3, true);
  assertThrows(
    () => decodeMessage(encodeMessage(Request.SET_MEM_TABLE, 0, table), 3),
    ProtocolError,
    "do not fit",
  );
  assertEquals(requestName(Request.GET_VRING_BASE), "GET_VRING_BASE");
});
