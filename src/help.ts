/** `cutcap help`: the commands and the capture options; README.md explains each in full. */
export const HELP = `cutcap — full packet capture with flow cutoff, pcap archive, index and query

Commands:
  cutcap [capture] [options]     capture live (--interface) or replay files (--read)
  cutcap serve --out DIR         serve an existing archive: /query, /flows, /metrics, /healthz
  cutcap query [--server URL] [--token T] [-w FILE] QUERY
                                 matching packets as pcap (cutcap query 'host 198.18.0.1' | tcpdump -nr -)
  cutcap flows [--server URL] QUERY
                                 matching flows as a table
  cutcap index FILE...           index existing pcap files so they can be queried in place
  cutcap interfaces              list capture interfaces
  cutcap version                 versions of cutcap, Deno and libpcap

Capture options (defaults in brackets):
  -i, --interface IF[,IF...]     interfaces to capture on [the default interface]
  -r, --read FILE...             replay pcap/pcapng files through the pipeline, exit when done
  -o, --out DIR                  archive directory [./out]
  -w, --workers N                workers per interface (AF_PACKET fanout) [1]
  -s, --snaplen N                bytes kept per packet [262144]
      --no-promisc               do not put the interface in promiscuous mode
      --buffer-size SIZE         kernel ring per worker [64MiB]
      --pcap-timeout DUR         libpcap read timeout [100ms]
      --immediate                libpcap immediate mode
  -f, --filter BPF               capture filter
      --byte-cutoff SIZE         stop storing a flow after this many bytes, 0 = never [64KiB]
      --packet-cutoff N          stop storing a flow after this many packets, 0 = never [0]
      --flow-timeout DUR         idle time after which a flow ends [5m]
      --max-flows N              flow table size per worker [1000000]
      --rotate-interval DUR      start a new file this often, 0 = never [1m]
      --flush-interval DUR       write stored packets within this time, 0 = full blocks only [1s]
      --rotate-size SIZE         start a new file at this size on disk, 0 = never [1GiB]
      --compress none|gzip|zstd  output compression, in seekable blocks [none]
      --compress-level N         gzip 1-9 / zstd 1-22, 0 = level 1 (fastest) [0]
      --nanosecond               nanosecond timestamps in the output
      --stats-interval DUR       stats line per worker, 0 = off [30s]
      --listen HOST:PORT         HTTP server, "off" to disable [127.0.0.1:9102]
      --metrics-file PATH        write the final metrics there at exit (textfile collector)
      --libpcap PATH             libpcap build to load (SNF, PF_RING) [$CUTCAP_LIBPCAP or the system's]
      --log-format text|json     [text]
      --user NAME                drop root privileges after opening the capture handles
      --min-free SIZE|PCT        keep this much of the output filesystem free
      --max-bytes SIZE           keep the archive below this size, 0 = no limit [0]
      --max-age DUR              delete files older than this, 0 = no limit [0]
      --large-flow-threshold SIZE  log a flow when it crosses this size (doubling) [1GiB]
      --large-flow-command CMD   run CMD with the flow's key when it crosses the threshold
      --tls-cert FILE --tls-key FILE  serve HTTPS
      --token-file FILE          require this bearer token on the query endpoints
      --insecure                 allow a non-loopback --listen without TLS and token
      --open-metrics             leave /metrics and /healthz open without a token
      --max-query-packets N      server-wide cap on packets per query [10000000]
      --max-concurrent-queries N queries at once; more get 503 [4]
`;
