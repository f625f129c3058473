import { assertEquals, assertRejects, assertThrows } from "../assert.ts";
import {
  Channel,
  encodeFrame,
  FrameDecoder,
  ProtocolError,
  RemoteError,
  type RequestHandler,
} from "../../daemon/ipc.ts";
import { type Envelope, MAX_FRAME_BYTES, PROTOCOL_VERSION } from "../../daemon/protocol.ts";

Deno.test("frames are a big-endian length and JSON, decoded across arbitrary chunking", () => {
  const msgs: Envelope[] = [
    { type: "Hello", version: PROTOCOL_VERSION, role: "api", pid: 1 },
    { type: "Request", id: 7, request: { type: "RemoveNic", id: "n-1" } },
    { type: "Event", event: { type: "NicStateChanged", status: { id: "n-1", state: "ACTIVE" } } },
  ];
  const bytes = new Uint8Array(msgs.map(encodeFrame).flatMap((f) => [...f]));
  const first = encodeFrame(msgs[0]);
  assertEquals(new DataView(first.buffer).getUint32(0), first.length - 4);
  for (const chunk of [1, 3, 17, bytes.length]) {
    const dec = new FrameDecoder();
    const out: Envelope[] = [];
    for (let i = 0; i < bytes.length; i += chunk) {
      out.push(...dec.push(bytes.subarray(i, i + chunk)));
    }
    assertEquals(out, msgs);
  }
});

Deno.test("oversized, non-JSON and untyped frames are protocol errors", () => {
  const big = new Uint8Array(4);
  new DataView(big.buffer).setUint32(0, MAX_FRAME_BYTES + 1);
  assertThrows(() => new FrameDecoder().push(big), ProtocolError, "exceeds");
  const junk = new Uint8Array([0, 0, 0, 3, 0x7b, 0x7b, 0x7b]);
  assertThrows(() => new FrameDecoder().push(junk), ProtocolError, "not JSON");
  const untyped = new TextEncoder().encode("[1]");
  assertThrows(
    () => new FrameDecoder().push(new Uint8Array([0, 0, 0, untyped.length, ...untyped])),
    ProtocolError,
    "not an envelope",
  );
});

async function pair(onRequest: RequestHandler) {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/c.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  const serverSide = (async () => {
    const conn = await listener.accept();
    return await Channel.open(conn, { role: "dataplane", onRequest });
  })();
  const client = await Channel.open(await Deno.connect({ transport: "unix", path }), {
    role: "api",
  });
  const server = await serverSide;
  return {
    client,
    server,
    async close() {
      client.close();
      server.close();
      listener.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("requests are answered by id and failures carry their code", async () => {
  const p = await pair(async (req) => {
    if (req.type === "Ping") return { type: "Pong", pid: 42, uptimeMs: 1 };
    if (req.type === "RemoveNic") throw new RemoteError("not_found", `no vNIC ${req.id}`);
    await new Promise((r) => setTimeout(r, 10));
    return { type: "Done" };
  });
  try {
    assertEquals(p.server.peer.role, "api");
    const [a, b] = await Promise.all([
      p.client.request({ type: "RemoveNetwork", id: "x" }),
      p.client.request({ type: "Ping" }),
    ]);
    assertEquals(a, { type: "Done" });
    assertEquals(b, { type: "Pong", pid: 42, uptimeMs: 1 });
    const err = await assertRejects(
      () => p.client.request({ type: "RemoveNic", id: "n9" }),
      RemoteError,
    );
    assertEquals((err as RemoteError).code, "not_found");
    assertEquals(err.message, "no vNIC n9");
  } finally {
    await p.close();
  }
});

Deno.test("a request without an answer times out, and closing fails what is pending", async () => {
  const p = await pair(() => new Promise(() => {}));
  try {
    await assertRejects(
      () => p.client.request({ type: "Ping" }, 50),
      ProtocolError,
      "no answer within 50 ms",
    );
    const pending = p.client.request({ type: "Ping" }, 5_000);
    p.server.close();
    await assertRejects(() => pending, ProtocolError, "channel closed");
  } finally {
    await p.close();
  }
});
