import { assert, assertEquals } from "../assert.ts";
import { loadContract } from "../../api/proto.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

Deno.test("api/proto_types.ts is generated from the current proto/", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      `--config=${ROOT}deno.json`,
      "--allow-read",
      "--allow-env",
      "--allow-run",
      `${ROOT}scripts/gen_proto_types.ts`,
      "--check",
    ],
    stderr: "piped",
  }).output();
  assert(out.success, new TextDecoder().decode(out.stderr));
});

Deno.test("the contract has every RPC of API.md with its streaming shape", () => {
  const service = loadContract().NetService.service;
  const rpcs = Object.entries(service).map(([name, d]) => `${name}${d.responseStream ? "*" : ""}`);
  assertEquals(rpcs.sort(), [
    "AddSecurityGroupRule",
    "AttachNic",
    "AttachSecurityGroup",
    "CreateNetwork",
    "CreateNic",
    "CreateSecurityGroup",
    "DeleteNetwork",
    "DeleteNic",
    "DeleteSecurityGroup",
    "DetachSecurityGroup",
    "GetNetwork",
    "GetNic",
    "GetSecurityGroup",
    "GetVersion",
    "ListNetworks",
    "ListNics",
    "ListSecurityGroups",
    "RemoveSecurityGroupRule",
    "UpdateNetwork",
    "UpdateNic",
    "WatchNetworks*",
    "WatchNics*",
  ]);
  assertEquals(service.CreateNic.path, "/mvirt.net.NetService/CreateNic");
});

Deno.test("the diagnostics service is separate from the contract", () => {
  const service = loadContract().Diagnostics.service;
  assertEquals(Object.keys(service).sort(), ["GetNicCounters", "GetSecurityGroupHits"]);
  assertEquals(service.GetNicCounters.path, "/mvirt.net.diag.Diagnostics/GetNicCounters");
});
