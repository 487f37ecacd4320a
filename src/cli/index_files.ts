/** `cutcap index FILE...`: indexes existing pcap files (tcpdump's, gotm's) so they can be queried in place. */
import { parseStrict } from "../config.ts";
import type { OptionTable } from "./options.ts";
import { indexPcapFile } from "../index/index_pcap.ts";

/** Option table of `cutcap index` (parser and help). */
export const INDEX_OPTIONS = {
  iface: {
    type: "string",
    default: "",
    arg: "NAME",
    help: "interface name recorded in the index",
  },
} as const satisfies OptionTable;

/** Writes `<file>.idx` beside each file; one line per file; exit 1 when any failed. */
export function runIndexCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseStrict(argv, INDEX_OPTIONS);
  if (positionals.length === 0) throw new Error("Missing files: cutcap index FILE...");
  let failed = 0;
  for (const file of positionals) {
    try {
      const summary = indexPcapFile(file, { iface: values.iface });
      console.log(`${file}: ${JSON.stringify(summary)}`);
    } catch (error) {
      failed++;
      console.error(`cutcap: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  return Promise.resolve(failed > 0 ? 1 : 0);
}
