import { assertEquals, assertThrows } from "../assert.ts";
import {
  ConfigError,
  formatListen,
  parseArgs,
  parseConfig,
  parseListen,
} from "../../daemon/config.ts";

Deno.test("defaults: gRPC on [::1]:50054, local directories, TUN on", () => {
  const cfg = parseConfig([], {}, "/srv");
  assertEquals(cfg.listen, { kind: "tcp", host: "::1", port: 50054 });
  assertEquals(cfg.socketDir, "/srv/.run/sockets");
  assertEquals(cfg.dataDir, "/srv/.data");
  assertEquals(cfg.tun, true);
  assertEquals(cfg.tunName, "mvirt-net");
  assertEquals(cfg.logLevel, "info");
  assertEquals(cfg.logFormat, "text");
  assertEquals(cfg.mtu, 1500);
});

Deno.test("flags override environment, environment overrides defaults", () => {
  const env = {
    MVIRT_NET_LISTEN: "127.0.0.1:9000",
    MVIRT_NET_LOG_LEVEL: "debug",
    MVIRT_NET_NO_TUN: "1",
  };
  const fromEnv = parseConfig([], env, "/x");
  assertEquals(fromEnv.listen, { kind: "tcp", host: "127.0.0.1", port: 9000 });
  assertEquals(fromEnv.logLevel, "debug");
  assertEquals(fromEnv.tun, false);
  const both = parseConfig([
    "--listen=unix:/run/m.sock",
    "--log-level",
    "warn",
    "--data-dir",
    "/var/lib/m",
  ], env);
  assertEquals(both.listen, { kind: "unix", path: "/run/m.sock" });
  assertEquals(both.logLevel, "warn");
  assertEquals(both.dataDir, "/var/lib/m");
});

Deno.test("unknown flags and bad values are refused, naming the flag and value", () => {
  const cases: Array<[string[], Record<string, string>, string]> = [
    [["--lisen", "x"], {}, 'unknown flag "--lisen"'],
    [
      ["--listen", "nope"],
      {},
      '--listen: expected HOST:PORT, [IPV6]:PORT or unix:/path, got "nope"',
    ],
    [["--listen", "[::1]:70000"], {}, '--listen: port must be 0-65535, got "70000"'],
    [["--listen", "unix:rel.sock"], {}, "--listen: unix socket path must be absolute"],
    [
      ["--log-level", "loud"],
      {},
      '--log-level: expected one of debug, info, warn, error, got "loud"',
    ],
    [["--log-format", "xml"], {}, '--log-format: expected one of text, json, got "xml"'],
    [["--tun-name", "a-name-that-is-too-long"], {}, "--tun-name: an interface name of 1-15"],
    [["--mtu", "99999"], {}, '--mtu: expected a whole number 1280-9000, got "99999"'],
    [["--no-tun=yes"], {}, '--no-tun takes no value, got "--no-tun=yes"'],
    [["--data-dir"], {}, "--data-dir needs a value"],
    [
      [],
      { MVIRT_NET_LOG_FORMAT: "yaml" },
      'MVIRT_NET_LOG_FORMAT: expected one of text, json, got "yaml"',
    ],
    [
      [],
      { MVIRT_NET_NO_TUN: "maybe" },
      'MVIRT_NET_NO_TUN: expected 1, true, 0 or false, got "maybe"',
    ],
  ];
  for (const [args, env, msg] of cases) {
    assertThrows(() => parseConfig(args, env, "/"), ConfigError, msg);
  }
});

Deno.test("--help is recognised", () => {
  assertEquals(parseArgs(["--socket-dir", "/s", "--help"], {}).help, true);
});

Deno.test("listen addresses round-trip", () => {
  for (const a of ["[::1]:50054", "127.0.0.1:1", "unix:/run/x.sock", "[fe80::1]:80"]) {
    assertEquals(formatListen(parseListen(a)), a);
  }
});

Deno.test("--socket-group: names are looked up in the group file, GIDs taken as given", () => {
  const dir = Deno.makeTempDirSync();
  const groups = `${dir}/group`;
  Deno.writeTextFileSync(groups, "root:x:0:\nkvm:x:104:alice\nlibvirt-qemu:x:64055:\n");
  try {
    assertEquals(parseConfig([], {}, "/", groups).socketGroup, null, "default: no change");
    assertEquals(parseConfig(["--socket-group", "kvm"], {}, "/", groups).socketGroup, 104);
    assertEquals(
      parseConfig([], { MVIRT_NET_SOCKET_GROUP: "libvirt-qemu" }, "/", groups).socketGroup,
      64055,
    );
    assertEquals(parseConfig(["--socket-group=4242"], {}, "/", groups).socketGroup, 4242);
    const bad: Array<[string[], Record<string, string>, string]> = [
      [["--socket-group", "wheel"], {}, `--socket-group: no group named "wheel" in ${groups}`],
      [
        ["--socket-group", "4294967295"],
        {},
        '--socket-group: a GID must be 0-4294967294, got "4294967295"',
      ],
      [
        [],
        { MVIRT_NET_SOCKET_GROUP: "a b" },
        'MVIRT_NET_SOCKET_GROUP: expected a group name or a numeric GID, got "a b"',
      ],
    ];
    for (const [args, env, msg] of bad) {
      assertThrows(() => parseConfig(args, env, "/", groups), ConfigError, msg);
    }
    assertThrows(
      () => parseConfig(["--socket-group", "kvm"], {}, "/", `${dir}/missing`),
      ConfigError,
      "--socket-group: cannot read",
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("the gRPC TCP listener defaults to loopback", () => {
  const { listen } = parseConfig([], {}, "/");
  assertEquals(listen.kind === "tcp" && listen.host, "::1");
});
