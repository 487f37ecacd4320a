/**
 * Independent oracles for tests: tcpdump and tshark read our files, and their answers are compared with
 * what went in. Nothing here uses cutcap's own pcap code.
 */

/** One packet as tcpdump and tshark see it. */
export interface OraclePacket {
  /** Timestamp as tcpdump prints it with -tt (seconds.fraction). */
  ts: string;
  /** Captured bytes as lowercase hex. */
  hex: string;
}

/** Runs a command; throws with its stderr when it fails. */
export async function run(
  cmd: string,
  args: string[],
  stdin?: Uint8Array,
  options: { allowFailure?: boolean } = {},
): Promise<string> {
  const child = new Deno.Command(cmd, {
    args,
    stdin: stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Feed stdin while stdout drains: writing all of it first would deadlock on a full pipe.
  const feeding = stdin
    ? (async () => {
      const writer = child.stdin.getWriter();
      await writer.write(stdin);
      await writer.close();
    })()
    : Promise.resolve();
  const [out] = await Promise.all([child.output(), feeding.catch(() => {})]);
  if (!out.success && !options.allowFailure) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return new TextDecoder().decode(out.stdout);
}

/** Decompresses a file with the tool an operator would use (zcat / zstdcat), or reads it as is. */
export async function fileBytes(path: string): Promise<Uint8Array> {
  if (path.endsWith(".gz")) return await runBytes("zcat", [path]);
  if (path.endsWith(".zst")) return await runBytes("zstdcat", [path]);
  return await Deno.readFile(path);
}

async function runBytes(cmd: string, args: string[]): Promise<Uint8Array> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return out.stdout;
}

/** Packets of a pcap file as tcpdump reads them (via zcat/zstdcat for compressed files). */
export async function tcpdumpPackets(
  path: string,
  options: { nanosecond?: boolean; filter?: string; allowFailure?: boolean } = {},
): Promise<OraclePacket[]> {
  const args = ["-r", "-", "-tt", "-nn", "-xx", "-K"];
  if (options.nanosecond) args.push("--time-stamp-precision=nano");
  if (options.filter) args.push(options.filter);
  const text = await run("tcpdump", args, await fileBytes(path), options);
  return parseTcpdumpHex(text);
}

/** Parses `tcpdump -tt -xx` output into timestamps and hex bytes. */
export function parseTcpdumpHex(text: string): OraclePacket[] {
  const packets: OraclePacket[] = [];
  let current: OraclePacket | undefined;
  for (const line of text.split("\n")) {
    const hexLine = /^\s+0x[0-9a-f]+:\s+(.*)$/.exec(line);
    if (hexLine && current) {
      // tcpdump prints up to 8 groups of 4 hex digits, then (with -X) ASCII; -xx has no ASCII column.
      current.hex += hexLine[1].replace(/\s+/g, "");
      continue;
    }
    // A packet's first line starts at column 0 with its time: "1700000000.123456 IP ..." or, for
    // times tcpdump cannot convert, "[Error converting time] IP ...".
    const head = /^(\d+\.\d+|\[Error converting time\]) /.exec(line);
    if (head) {
      current = { ts: head[1], hex: "" };
      packets.push(current);
    }
  }
  return packets;
}

/** Wire lengths (frame.len) of every packet, from tshark. */
export async function tsharkLengths(path: string): Promise<number[]> {
  const text = await run(
    "tshark",
    ["-r", "-", "-T", "fields", "-e", "frame.len"],
    await fileBytes(path),
  );
  return text.split("\n").filter((l) => l !== "").map(Number);
}

/** Every finalized pcap file under an archive directory, sorted by name. */
export function archiveFiles(outDir: string): string[] {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const entry of Deno.readDirSync(dir)) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) walk(path);
      else if (/\.pcap(\.gz|\.zst)?$/.test(entry.name) && !entry.name.startsWith(".")) {
        files.push(path);
      }
    }
  };
  walk(outDir);
  return files.sort();
}

/** Result of a cutcap run. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `deno run -A main.ts ARGS` from the repository root. */
export async function cutcap(
  args: string[],
  options: { env?: Record<string, string> } = {},
): Promise<CliResult> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../../main.ts", import.meta.url).pathname, ...args],
    stdout: "piped",
    stderr: "piped",
    env: options.env,
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}
