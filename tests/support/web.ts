/**
 * Helpers for the page's tests: the flows table's rows as the server rendered them, and the number
 * of records in a pcap answer.
 */

/** One row of the rendered flows table. */
export interface RenderedRow {
  src: string;
  dst: string;
  packets: number;
  /** The row's pcap link (HTML entities decoded). */
  pcap: string;
}

/** The rows of the flows table in server-rendered HTML (column order as the page has it). */
export function tableRows(html: string): RenderedRow[] {
  const body = /<tbody>([\s\S]*?)<\/tbody>/.exec(html)?.[1] ?? "";
  const header = [
    ...(/<thead>([\s\S]*?)<\/thead>/.exec(html)?.[1] ?? "").matchAll(/<th[^>]*>([\s\S]*?)<\/th>/g),
  ]
    .map((m) => m[1].replace(/<[^>]+>/g, "").replace(/ [▲▼]$/, ""));
  const at = (name: string) => header.indexOf(name);
  return [...body.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].map((row) => {
    const cells = [...row[1].matchAll(/<td[^>]*>([\s\S]*?)<\/td>/g)].map((m) => m[1]);
    const text = (i: number) => decode(cells[i].replace(/<[^>]+>/g, ""));
    return {
      src: text(at("Source")),
      dst: text(at("Destination")),
      packets: Number(text(at("Stored packets")).replaceAll(",", "")),
      pcap: decode(/href="([^"]+)"/.exec(cells[at("pcap")])?.[1] ?? ""),
    };
  });
}

function decode(text: string): string {
  return text.replaceAll("&quot;", '"').replaceAll("&#39;", "'").replaceAll("&lt;", "<")
    .replaceAll("&gt;", ">").replaceAll("&amp;", "&");
}

/** Records in a classic pcap (either byte order, either time precision). */
export function pcapRecordCount(bytes: Uint8Array): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0, true);
  const little = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  let count = 0;
  for (let at = 24; at + 16 <= bytes.length; count++) at += 16 + view.getUint32(at + 8, little);
  return count;
}
