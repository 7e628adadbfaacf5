#!/usr/bin/env bash
# Time-range playback and exports at scale: starts the backing services, builds the release control node and
# runs it on PostgreSQL (a database of its own, so pg_stat_database counts only this run) with a local object
# store, then measures
#   1. the time-range playlist of 24 h of 2-second segments (43,200 index rows seeded straight into `segments`)
#      and of 1 h: latency p50/p99 over many requests, playlist bytes, the database's work per request and the
#      query's EXPLAIN (ANALYZE, BUFFERS);
#   2. export throughput: 30 minutes of real 2-second segments (ffmpeg lavfi testsrc + sine, 320x240, ultrafast)
#      stored as objects with their index rows; `curl .../export.mp4` next to `ffmpeg -i concat:... -c copy` of
#      the same files to MP4 (same muxer flags as the exporter), alternated, and `.../export.ts`;
#   3. the control node's RSS (VmRSS every 200 ms) before, during and after 4 concurrent 30-minute MP4 exports,
#      each export's ffprobe duration and -count_frames against the frame count of the segments.
# Writes bench/results/archive.md (or --out FILE).
#
#   bash bench/archive.sh                                   the full run (about 5 minutes after the build)
#   bash bench/archive.sh --requests 40 --runs 1 --minutes 5 --out /tmp/archive.md   a quick look
#
# The generated segments are kept in /var/tmp/livemix-archive-segments-<minutes>m for the next run.
# LIVEMIX_BENCH_KEEP=1 keeps the work directory, the control node's log and the database.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
log() { echo "[archive-bench] $(date +%T) $*" >&2; }

REQUESTS=200 CONCURRENCY=4 RUNS=3 MINUTES=30 EXPORTS=4 OUT=bench/results/archive.md
COMMAND="bash bench/archive.sh $*"
while [ $# -gt 0 ]; do
    case $1 in
        --requests) REQUESTS=$2; shift 2 ;;
        --concurrency) CONCURRENCY=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --minutes) MINUTES=$2; shift 2 ;;
        --exports) EXPORTS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        *) echo "unknown argument $1 (--requests N --concurrency N --runs N --minutes N --exports N --out FILE)" >&2; exit 2 ;;
    esac
done

bash scripts/services.sh up >&2
eval "$(bash scripts/services.sh env)"
# No bucket: the control node records to (and exports from) --local-store-dir, so the figures are LiveMix's and
# not the S3 emulator's.
unset LIVEMIX_BUCKET
log "building release binaries"
cargo build --release -p livemix-control -p livemix-bench >&2
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release

DB=livemix_archive_bench_$$
ADMIN_URL=$DATABASE_URL
BENCH_URL=${DATABASE_URL%/*}/$DB
psql -q "$ADMIN_URL" -c "CREATE DATABASE $DB" >&2
WORK=$(mktemp -d /var/tmp/livemix-archive.XXXXXX)
CONTROL_PID=
SAMPLER_PID=
cleanup() {
    [ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2>/dev/null || true
    if [ -n "$CONTROL_PID" ]; then kill "$CONTROL_PID" 2>/dev/null || true; wait "$CONTROL_PID" 2>/dev/null || true; fi
    if [ "${LIVEMIX_BENCH_KEEP:-}" = 1 ]; then
        log "kept $WORK and database $DB"
    else
        psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB" >&2 || true
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

q() { psql -X -q -At -v ON_ERROR_STOP=1 "$BENCH_URL" "$@"; }
ulid() { python3 -c 'import os,sys,time
a="0123456789ABCDEFGHJKMNPQRSTVWXYZ"; n=(int(float(sys.argv[1])*1000)<<80)|int.from_bytes(os.urandom(10),"big")
print("".join(a[(n>>(5*i))&31] for i in reversed(range(26))))' "$1"; }
uuid() { cat /proc/sys/kernel/random/uuid; }
now() { date +%s.%N; }
# Percentile p (0-100) of the numbers in a file, nearest rank.
pct() { sort -g "$1" | awk -v p="$2" '{v[NR]=$1} END {i=int(p/100*NR+0.999999); if (i<1) i=1; if (i>NR) i=NR; print v[i]}'; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$CONTROL_PID/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$CONTROL_PID/status"; }

mapfile -t PORTS < <("$BIN/livemix-bench" free-ports 3)
MGMT=${PORTS[0]} VOD=${PORTS[1]} EDGE=${PORTS[2]}
topic=bench-archive-$$
DATABASE_URL=$BENCH_URL LIVEMIX_CREATE_TOPICS=true "$BIN/livemix-control" \
    --management-addr "127.0.0.1:$MGMT" --vod-addr "127.0.0.1:$VOD" --edge-api-addr "127.0.0.1:$EDGE" \
    --edge-token bench-archive-token --control-topic "$topic" --control-subscription "$topic" \
    --reply-topic "$topic-reply" --reply-subscription "$topic-reply" --broadcast-topic= \
    --local-store-dir "$WORK/objects" \
    --retention-interval-secs 86400 --gc-interval-secs 0 --deletion-interval-secs 3600 \
    >"$WORK/control.log" 2>&1 &
CONTROL_PID=$!
for _ in $(seq 150); do
    curl -fsS -o /dev/null "http://127.0.0.1:$MGMT/liveness/ready" 2>/dev/null && break
    kill -0 "$CONTROL_PID" 2>/dev/null || { cat "$WORK/control.log" >&2; exit 1; }
    sleep 0.2
done
log "control node ready: management :$MGMT, VOD :$VOD (pid $CONTROL_PID), database $DB, store $WORK/objects"
VODURL=http://127.0.0.1:$VOD/v1/vod/source

# ---------------------------------------------------------------------------------------------------------------
# 1. Time-range playlists over 43,200 index rows
# ---------------------------------------------------------------------------------------------------------------
SRC1=$(uuid)
T0=$(( $(date +%s) / 3600 * 3600 - 26 * 3600 ))   # 24 h of segments ending 2 h ago, on the hour
RUN1=$(ulid "$T0")
REC1=$(ulid "$T0")
log "seeding 43,200 segments of source $SRC1 from $(date -u -d @$T0 +%FT%TZ)"
seed_start=$(now)
q <<SQL
BEGIN;
INSERT INTO sources (id, name, segment_length) VALUES ('$SRC1', 'bench-archive-24h', 2);
INSERT INTO recordings (id, source, source_name, start_ts, end_ts, active)
    VALUES ('$REC1', '$SRC1', 'bench-archive-24h', to_timestamp($T0), to_timestamp($T0 + 86400), false);
INSERT INTO segments (source, name, run, seq, discontinuity, start_ts, end_ts, length_ms, size, uri, sha256)
    SELECT '$SRC1', 'index' || g || '.ts', '$RUN1', g, false,
        to_timestamp($T0) + g * interval '2 seconds', to_timestamp($T0) + (g + 1) * interval '2 seconds',
        2000, 180000 + (g % 97) * 100, 'recordings/$SRC1/$RUN1/' || lpad(g::text, 12, '0') || '.ts',
        encode(sha256(g::text::bytea), 'hex')
    FROM generate_series(0, 43199) g;
INSERT INTO recording_segments (recording, segment) SELECT '$REC1', id FROM segments WHERE source = '$SRC1';
COMMIT;
VACUUM ANALYZE segments;
VACUUM ANALYZE recording_segments;
SQL
SEED_SECS=$(awk -v a="$seed_start" -v b="$(now)" 'BEGIN {printf "%.1f", b-a}')
TOTAL_ROWS=$(q -c "SELECT count(*) FROM segments")

db_counters() {
    q -c "SELECT xact_commit, blks_hit, blks_read, tup_returned, tup_fetched FROM pg_stat_database WHERE datname = current_database()"
}

# measure_playlist LABEL START END: one request for bytes and entries, then $REQUESTS at $CONCURRENCY at once.
PLAYLIST_ROWS=()
EXPLAINS=()
declare -A P50 P99 CPU EXEC BYTES
measure_playlist() {
    local label=$1 start=$2 end=$3 url="$VODURL/$SRC1/vid.m3u8?start=$2&end=$3" file=$WORK/playlist.m3u8
    log "playlist $label: $url"
    local code
    code=$(curl -sS -o "$file" -w '%{http_code}' "$url")
    [ "$code" = 200 ] || { log "playlist $label: HTTP $code: $(head -c 300 "$file")"; exit 1; }
    local bytes entries gzip
    bytes=$(stat -c %s "$file")
    entries=$(grep -c '^#EXTINF' "$file")
    gzip=$(gzip -c "$file" | wc -c)
    # Counters settle: a backend flushes its statistics when idle, at the latest 10 s after its last flush.
    sleep 11
    local before after c0 c1 t0 t1
    local pg0 pg1
    pg0=$(q -c "SELECT pg_postmaster_start_time()")
    before=$(db_counters)
    c0=$(cpu_ticks)
    t0=$(now)
    seq "$REQUESTS" | xargs -P "$CONCURRENCY" -I{} curl -sS -o /dev/null -w '%{http_code} %{time_total}\n' "$url" \
        >"$WORK/times-$label.txt"
    t1=$(now)
    c1=$(cpu_ticks)
    sleep 11
    after=$(db_counters)
    pg1=$(q -c "SELECT pg_postmaster_start_time()")
    # Another user of the shared services restarting PostgreSQL would void the figures: say so.
    [ "$pg0" = "$pg1" ] || log "WARNING: PostgreSQL restarted during the $label run ($pg0 -> $pg1); run again"
    awk '{print $2 * 1000}' "$WORK/times-$label.txt" >"$WORK/ms-$label.txt"
    local errors wall p50 p90 p99 max rps cpu_ms
    errors=$(awk '$1 != 200 {n++; c[$1]++} END {printf "%d", n; for (k in c) printf " (%dx HTTP %s)", c[k], k}' "$WORK/times-$label.txt")
    [ "$pg0" = "$pg1" ] || errors="$errors, PostgreSQL restarted during the run"
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b-a}')
    p50=$(pct "$WORK/ms-$label.txt" 50) p90=$(pct "$WORK/ms-$label.txt" 90)
    p99=$(pct "$WORK/ms-$label.txt" 99) max=$(pct "$WORK/ms-$label.txt" 100)
    rps=$(awk -v n="$REQUESTS" -v w="$wall" 'BEGIN {printf "%.1f", n/w}')
    cpu_ms=$(awk -v a="$c0" -v b="$c1" -v n="$REQUESTS" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", (b-a)*1000/hz/n}')
    local db
    db=$(awk -F'|' -v b="$before" -v n="$REQUESTS" '{split(b, x, "|");
        printf "%d | %.0f | %.0f | %.0f | %.0f", $1-x[1], ($2-x[2])/n, ($3-x[3])/n, ($4-x[4])/n, ($5-x[5])/n}' <<<"$after")
    PLAYLIST_ROWS+=("| $label | $entries | $bytes ($gzip gzipped) | $REQUESTS x $CONCURRENCY | $errors | $(printf '%.1f' "$p50") | $(printf '%.1f' "$p90") | $(printf '%.1f' "$p99") | $(printf '%.1f' "$max") | $rps | $cpu_ms | $db |")
    # The statement source_segments_between runs (control/src/db/segments.rs), with its parameters written in.
    local earliest=$((start - 600)) plan
    plan=$(q -c "EXPLAIN (ANALYZE, BUFFERS) SELECT s.id, s.name, s.source, s.run, s.seq, s.discontinuity,
        s.start_ts, s.end_ts, s.length_ms, s.size, s.uri, s.sha256 FROM segments s WHERE s.source = '$SRC1'
        AND s.start_ts >= to_timestamp($earliest) AND s.start_ts < to_timestamp($end) AND s.end_ts > to_timestamp($start)
        ORDER BY CAST(extract(epoch FROM s.start_ts) AS DOUBLE PRECISION), s.seq, s.id LIMIT 100001")
    EXPLAINS+=("$label:" "$plan" "")
    P50[$label]=$(printf '%.0f' "$p50") P99[$label]=$(printf '%.0f' "$p99") CPU[$label]=$cpu_ms BYTES[$label]=$bytes
    EXEC[$label]=$(sed -n 's/^Execution Time: \([0-9.]*\) ms/\1/p' <<<"$plan")
    log "playlist $label: $entries entries, $bytes bytes, p50 ${p50} ms, p99 ${p99} ms, $rps req/s, $errors errors"
}
measure_playlist 24h "$T0" "$((T0 + 86400))"
measure_playlist 1h "$((T0 + 12 * 3600))" "$((T0 + 13 * 3600))"
# An idle stretch of the same length for the control node's own background queries.
idle0=$(db_counters); sleep 22; idle1=$(db_counters)
IDLE_XACTS=$(awk -F'|' -v b="$idle0" '{split(b, x, "|"); print $1-x[1]}' <<<"$idle1")

# ---------------------------------------------------------------------------------------------------------------
# 2. Export throughput next to ffmpeg -c copy
# ---------------------------------------------------------------------------------------------------------------
# make_segments DIR SECONDS [AUDIO ARGS...]: 2-second segments of the test pattern (and a tone when audio
# arguments are given), made once and kept in DIR. Sets GEN_CMD, and GEN_SECS to how long the making took.
make_segments() {
    local dir=$1 secs=$2; shift 2
    local audio_in=() audio_out=()
    if [ $# -gt 0 ]; then audio_in=(-f lavfi -i sine=frequency=440:sample_rate=48000); audio_out=(-map 1:a "$@"); fi
    GEN_CMD=(ffmpeg -hide_banner -loglevel error -f lavfi -i testsrc=size=320x240:rate=25 "${audio_in[@]}"
        -t "$secs" -map 0:v "${audio_out[@]}"
        -c:v libx264 -preset ultrafast -pix_fmt yuv420p -g 50 -keyint_min 50 -sc_threshold 0
        -b:v 500k -maxrate 500k -bufsize 1000k
        -f hls -hls_time 2 -hls_list_size 0 -hls_segment_filename 's%05d.ts' index.m3u8)
    GEN_SECS=cached
    if grep -q '^#EXT-X-ENDLIST' "$dir/index.m3u8" 2>/dev/null; then return; fi
    log "making $secs s of 2-second segments in $dir"
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    local g0; g0=$(now)
    (cd "$dir.tmp" && "${GEN_CMD[@]}")
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
    GEN_SECS=$(awk -v a="$g0" -v b="$(now)" 'BEGIN {printf "%.1f s", b-a}')
}

# store_segments DIR SOURCE NAME T: the segments of DIR as objects of SOURCE (hard links) with their index rows
# from time T on (real durations, sizes and SHA-256), and a finished recording of them. Sets FILES, DURS, NSEG,
# RUN and TEND (the end, rounded up to the second).
store_segments() {
    local dir=$1 source=$2 name=$3 t=$4
    mapfile -t FILES < <(grep -v '^#' "$dir/index.m3u8")
    mapfile -t DURS < <(sed -n 's/^#EXTINF:\([0-9.]*\),.*/\1/p' "$dir/index.m3u8")
    NSEG=${#FILES[@]}
    RUN=$(ulid "$t")
    local rec; rec=$(ulid "$t")
    log "storing $NSEG segments of $dir as source $source ($name)"
    {
        echo "BEGIN;"
        echo "INSERT INTO sources (id, name, segment_length) VALUES ('$source', '$name', 2);"
        echo "INSERT INTO segments (source, name, run, seq, discontinuity, start_ts, end_ts, length_ms, size, uri, sha256) VALUES"
        local i f key d next sep start=$t
        for i in "${!FILES[@]}"; do
            f=$dir/${FILES[$i]}
            key=recordings/$source/$RUN/$(printf '%012d' "$i").ts
            mkdir -p "$(dirname "$WORK/objects/$key")"
            ln "$f" "$WORK/objects/$key" 2>/dev/null || cp "$f" "$WORK/objects/$key"
            d=${DURS[$i]}
            next=$(awk -v t="$t" -v d="$d" 'BEGIN {printf "%.3f", t+d}')
            sep=,; [ "$i" -eq $((NSEG - 1)) ] && sep=";"
            printf "('%s', 'index%d.ts', '%s', %d, false, to_timestamp(%s), to_timestamp(%s), %d, %d, '%s', '%s')%s\n" \
                "$source" "$i" "$RUN" "$i" "$t" "$next" "$(awk -v d="$d" 'BEGIN {printf "%d", d*1000+0.5}')" \
                "$(stat -c %s "$f")" "$key" "$(sha256sum "$f" | cut -c1-64)" "$sep"
            t=$next
        done
        echo "INSERT INTO recordings (id, source, source_name, start_ts, end_ts, active)
            VALUES ('$rec', '$source', '$name', to_timestamp($start), to_timestamp($t), false);"
        echo "INSERT INTO recording_segments (recording, segment) SELECT '$rec', id FROM segments WHERE source = '$source';"
        echo "COMMIT;"
    } >"$WORK/seed-$source.sql"
    q -f "$WORK/seed-$source.sql"
    TEND=$(awk -v t="$t" 'BEGIN {printf "%d", t+0.999}')
}

SEGS=/var/tmp/livemix-archive-segments-${MINUTES}m
make_segments "$SEGS" $((MINUTES * 60)) -c:a aac -b:a 64k
GEN_LINE="${GEN_CMD[*]}"
SRC2=$(uuid)
T2=$(( $(date +%s) / 3600 * 3600 - 3 * 3600 ))
store_segments "$SEGS" "$SRC2" bench-archive-export "$T2"
RUN2=$RUN
T2END=$TEND
NSEG2=$NSEG
LAST2=${FILES[$((NSEG - 1))]}
TS_BYTES=$(for f in "${FILES[@]}"; do stat -c %s "$SEGS/$f"; done | awk '{s+=$1} END {print s}')
TS_MB=$(awk -v b="$TS_BYTES" 'BEGIN {printf "%.1f", b/1e6}')
EXPORT_URL="$VODURL/$SRC2/export.mp4?start=$T2&end=$T2END"
EXPORT_TS_URL="$VODURL/$SRC2/export.ts?start=$T2&end=$T2END"
CONCAT="concat:$(printf "$SEGS/%s|" "${FILES[@]}")"
CONCAT=${CONCAT%|}
FF_CMD=(ffmpeg -hide_banner -loglevel error -y -i "$CONCAT" -map '0:v?' -map '0:a?' -c copy -bsf:a aac_adtstoasc
    -f mp4 -movflags frag_keyframe+empty_moov+default_base_moof)

timed() { # timed OUTFILE CMD...: prints "seconds bytes status"
    local out=$1; shift
    local t0 t1 status=0
    t0=$(now)
    "$@" || status=$?
    t1=$(now)
    echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b-a}') $(stat -c %s "$out" 2>/dev/null || echo 0) $status"
}
# A download that is not a 200 or ends short (curl's exit status) fails.
curl_get() {
    local code rc=0
    code=$(curl -sS -o "$2" -w '%{http_code}' "${@:3}" "$1") || rc=$?
    [ "$rc" = 0 ] && [ "$code" = 200 ] || { echo "GET $1: HTTP $code, curl exit $rc" >&2; return 1; }
}
: >"$WORK/runs.txt"
for r in $(seq "$RUNS"); do
    log "run $r/$RUNS: export.mp4, ffmpeg concat, export.ts ($TS_MB MB of TS)"
    echo "livemix-mp4 $r $(timed "$WORK/live.mp4" curl_get "$EXPORT_URL" "$WORK/live.mp4")" >>"$WORK/runs.txt"
    echo "ffmpeg-mp4 $r $(timed "$WORK/ff.mp4" "${FF_CMD[@]}" "$WORK/ff.mp4")" >>"$WORK/runs.txt"
    echo "livemix-ts $r $(timed "$WORK/live.ts" curl_get "$EXPORT_TS_URL" "$WORK/live.ts")" >>"$WORK/runs.txt"
    if [ "$r" -lt "$RUNS" ]; then rm -f "$WORK/live.mp4" "$WORK/ff.mp4" "$WORK/live.ts"; fi
done
cat "$WORK/runs.txt" >&2
awk '$5 != 0 {bad=1} END {exit bad}' "$WORK/runs.txt" || log "WARNING: a run failed (status column of runs.txt)"
TS_IDENTICAL=no
cat "${FILES[@]/#/$SEGS/}" | cmp -s - "$WORK/live.ts" && TS_IDENTICAL=yes
THROUGHPUT_ROWS=()
declare -A MED
for what in livemix-mp4 ffmpeg-mp4 livemix-ts; do
    awk -v w="$what" '$1 == w {print $3}' "$WORK/runs.txt" >"$WORK/secs-$what.txt"
    med=$(pct "$WORK/secs-$what.txt" 50) lo=$(pct "$WORK/secs-$what.txt" 0) hi=$(pct "$WORK/secs-$what.txt" 100)
    size=$(awk -v w="$what" '$1 == w {s=$4} END {print s}' "$WORK/runs.txt")
    all=$(awk -v w="$what" '$1 == w {printf "%s%s", sep, $3; sep=", "}' "$WORK/runs.txt")
    MED[$what]=$med
    THROUGHPUT_ROWS+=("| $what | $all | $med ($lo-$hi) | $(awk -v b="$TS_BYTES" -v s="$med" 'BEGIN {printf "%.0f", b/1e6/s}') ($(awk -v b="$TS_BYTES" -v s="$hi" 'BEGIN {printf "%.0f", b/1e6/s}')-$(awk -v b="$TS_BYTES" -v s="$lo" 'BEGIN {printf "%.0f", b/1e6/s}')) | $(awk -v b="$TS_BYTES" -v d="$((MINUTES * 60))" -v s="$med" 'BEGIN {printf "%.0f", d/s}') | $size |")
done
probe_dur() { ffprobe -v error -show_entries format=duration -of default=nw=1:nk=1 "$1"; }
probe_frames() { ffprobe -v error -select_streams v:0 -count_frames -show_entries stream=nb_read_frames -of default=nw=1:nk=1 "$1" | head -1; }
log "counting the segments' frames (ffprobe -count_frames)"
EXPECTED_FRAMES=$(probe_frames "$CONCAT")
FF_DUR=$(probe_dur "$WORK/ff.mp4")
FF_FRAMES=$(probe_frames "$WORK/ff.mp4")
LIVE_DUR=$(probe_dur "$WORK/live.mp4")
rm -f "$WORK/live.mp4" "$WORK/ff.mp4" "$WORK/live.ts"

# ---------------------------------------------------------------------------------------------------------------
# 3. Control RSS during concurrent exports
# ---------------------------------------------------------------------------------------------------------------
# rss_phase LABEL [CURL OPTIONS...]: $EXPORTS concurrent MP4 exports, VmRSS sampled 5 s before, during, 5 s after.
RSS_ROWS=() EXPORT_ROWS=() FIFTH=() GROWTH=()
rss_phase() {
    local label=$1; shift
    log "RSS while $EXPORTS MP4 exports of $MINUTES minutes run at once ($label)"
    ( while kill -0 "$CONTROL_PID" 2>/dev/null; do
          kids=0
          for c in $(cat /proc/"$CONTROL_PID"/task/*/children 2>/dev/null); do
              k=$(awk '/^VmRSS/ {print $2}' "/proc/$c/status" 2>/dev/null || echo 0); kids=$((kids + ${k:-0}))
          done
          echo "$(now) $(awk '/^VmRSS/ {print $2}' "/proc/$CONTROL_PID/status") $kids"
          sleep 0.2
      done ) >"$WORK/rss-${label//[^a-z0-9]/-}.txt" &
    SAMPLER_PID=$!
    sleep 5
    local p0 p1 i p pids=()
    p0=$(now)
    for i in $(seq "$EXPORTS"); do
        ( timed "$WORK/c$i.mp4" curl_get "$EXPORT_URL" "$WORK/c$i.mp4" "$@" >"$WORK/c$i.txt" ) &
        pids+=($!)
    done
    sleep 0.5
    FIFTH+=("$label: \`$(curl -sS -o "$WORK/extra.txt" -w '%{http_code}, Retry-After: %header{retry-after}' "$EXPORT_URL" 2>/dev/null || true)\` $(head -c 200 "$WORK/extra.txt" | tr -d '\n' | grep -v '^.ftyp' || true)")
    for p in "${pids[@]}"; do wait "$p"; done
    p1=$(now)
    sleep 5
    kill "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=
    local base peak end kids_peak samples during
    read -r base peak end kids_peak samples during < <(awk -v p0="$p0" -v p1="$p1" '
        $1 < p0 {s+=$2; nb++} $1 >= p0 && $1 <= p1 {if ($2 > peak) peak=$2; if ($3 > kp) kp=$3; n++} {last=$2}
        END {printf "%d %d %d %d %d %d\n", s/nb, peak, last, kp, NR, n}' "$WORK/rss-${label//[^a-z0-9]/-}.txt")
    GROWTH+=("$(awk -v a="$base" -v b="$peak" 'BEGIN {printf "%+.1f MiB", (b-a)/1024}') ($label)")
    RSS_ROWS+=("| $label | $(awk -v a="$p0" -v b="$p1" 'BEGIN {printf "%.1f", b-a}') | $samples ($during during) | $(MIB "$base") | $(MIB "$peak") | $(MIB "$end") | $(MIB "$kids_peak") |")
    local secs size status
    for i in $(seq "$EXPORTS"); do
        read -r secs size status <"$WORK/c$i.txt"
        EXPORT_ROWS+=("| $label | $i | $status | $secs | $size | $(probe_dur "$WORK/c$i.mp4") | $(probe_frames "$WORK/c$i.mp4") |")
        rm -f "$WORK/c$i.mp4"
    done
}
MIB() { awk -v k="$1" 'BEGIN {printf "%.1f MiB", k/1024}'; }
# curl_get passes extra options after the URL and file.
rss_phase "full speed"
rss_phase "clients at 5 MB/s" --limit-rate 5M
HWM=$(awk '/^VmHWM/ {print $2}' "/proc/$CONTROL_PID/status")

# ---------------------------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------------------------
COMMIT=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- control common || COMMIT="$COMMIT (with uncommitted changes under control/ or common/)"
mkdir -p "$(dirname "$OUT")"
{
cat <<EOF
# Time-range playback and exports

Written by \`$COMMAND\` on $(date -u +'%F %T UTC').

**Reading.** A 24-hour time-range playlist (43,200 entries, $(awk -v b="${BYTES[24h]}" 'BEGIN {printf "%.1f", b/1e6}') MB of text) takes
${P50[24h]} ms at the median and ${P99[24h]} ms at p99 with $CONCURRENCY requests at once; the database's part is its one
statement (${EXEC[24h]} ms under EXPLAIN ANALYZE), the rest is the control node decoding 43,200 rows, rendering and
sending the text (${CPU[24h]} ms of its CPU per request). One hour of it costs ${P50[1h]} ms / ${P99[1h]} ms. The MP4
export streams $MINUTES minutes in ${MED[livemix-mp4]} s (median) where the same \`ffmpeg -c copy\` on the same files
alone takes ${MED[ffmpeg-mp4]} s: the export is ffmpeg's remux plus a pipe each way and HTTP, and the two files are
the same bytes; the \`.ts\` export, a plain copy of the objects, takes ${MED[livemix-ts]} s. With $EXPORTS exports at
once the control process's RSS moved by $(IFS=,; echo "${GROWTH[*]}" | sed 's/,/, /g') against ~$(awk -v b="$TS_BYTES" -v n="$EXPORTS" 'BEGIN {printf "%.0f", b*n/1e6}') MB of
video going through it: no file is held in memory, by the control node or (see the children's column) by ffmpeg.

- **Machine**: $(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(free -g | awk '/^Mem:/ {print $2}') GiB memory, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end (other jobs share the machine)
- **Commit**: $COMMIT; PostgreSQL: $(q -c "SHOW server_version"); $(ffmpeg -version | head -1 | cut -d' ' -f1-3)
- **Control node**: one release \`livemix-control\` on PostgreSQL (database \`$DB\` of its own, dropped afterwards), objects in a local directory (\`--local-store-dir\`, no bucket), defaults otherwise (\`--max-range 24h\`, 100,000 segments at most, 4 MP4 exports at once)

## 1. Time-range playlist over 24 hours of 2-second segments

$TOTAL_ROWS rows in \`segments\` ($SEED_SECS s to seed and analyze): source $SRC1, 43,200 segments of 2 s
(\`recordings/<source>/<run>/<seq:012>.ts\`, one run, one finished recording linking them all) from
$(date -u -d @$T0 +%FT%TZ) on (sections 2 and 3 add their rows afterwards). $REQUESTS requests of
\`GET /v1/vod/source/$SRC1/vid.m3u8?start=<epoch>&end=<epoch>\`, $CONCURRENCY at once (\`xargs -P $CONCURRENCY curl\`,
times are curl's \`time_total\`: connect to last byte). *Control CPU* is the control process's user+system time
over the run divided by the requests. Database columns are \`pg_stat_database\` deltas of the bench's own
database over the run: transactions in total, then blocks hit, blocks read, tuples returned and tuples fetched
per request (counters read 11 s after the last request so every backend has flushed; the control node's own
background work came to $IDLE_XACTS transactions in a 22 s idle stretch).

| range | segments | playlist bytes | requests | errors | p50 ms | p90 ms | p99 ms | max ms | req/s | control CPU ms/req | xacts | blks hit/req | blks read/req | tup returned/req | tup fetched/req |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
$(printf '%s\n' "${PLAYLIST_ROWS[@]}")

The statement \`Db::source_segments_between\` sends (control/src/db/segments.rs), with its parameters written in,
under \`EXPLAIN (ANALYZE, BUFFERS)\` (run after the requests, so with a warm cache):

\`\`\`
$(printf '%s\n' "${EXPLAINS[@]}")
\`\`\`

## 2. Export throughput next to \`ffmpeg -c copy\`

$NSEG2 real segments, $MINUTES minutes ($TS_MB MB of MPEG-TS, H.264 320x240 25 fps ~500 kbit/s + AAC 64 kbit/s),
made in \`$SEGS\` with (generation: $GEN_SECS)

\`\`\`
$GEN_LINE
\`\`\`

hard-linked into the store as \`recordings/$SRC2/$RUN2/<seq:012>.ts\` with their index rows (real
durations, sizes and SHA-256) and a finished recording. $RUNS alternated runs of, in this order:

\`\`\`
curl -o live.mp4 '$EXPORT_URL'
ffmpeg -hide_banner -loglevel error -y -i 'concat:$SEGS/s00000.ts|...|$SEGS/$LAST2' -map '0:v?' -map '0:a?' -c copy -bsf:a aac_adtstoasc -f mp4 -movflags frag_keyframe+empty_moov+default_base_moof ff.mp4
curl -o live.ts '$EXPORT_TS_URL'
\`\`\`

(the ffmpeg line is the exporter's own child command, \`control/src/export.rs\`, reading the same files through
the \`concat:\` protocol instead of a pipe). MB/s are MB of TS input per second of wall time; *x real time* is
$MINUTES minutes divided by the wall time. Every file is written to the same disk.

| what | wall s per run | median s (min-max) | MB/s of TS, median (min-max) | x real time | output bytes |
|---|---|---|---|---|---|
$(printf '%s\n' "${THROUGHPUT_ROWS[@]}")

- The \`.ts\` export is byte-identical to the segments concatenated: **$TS_IDENTICAL**.
- ffprobe of the last runs: LiveMix's MP4 lasts ${LIVE_DUR} s, ffmpeg's ${FF_DUR} s with $FF_FRAMES video frames;
  the segments hold **$EXPECTED_FRAMES** video frames (\`ffprobe -count_frames\` over \`concat:\` of the segments).

## 3. Control RSS while $EXPORTS MP4 exports of $MINUTES minutes run at once

VmRSS of the control process every 200 ms: 5 s before, while $EXPORTS \`curl -o cN.mp4 '$EXPORT_URL'\` run at once,
and 5 s after; once at full speed, once with each client held to 5 MB/s (\`curl --limit-rate 5M\`, so ffmpeg
and the segment reads must wait for the client: the case where a server that buffered would grow). The ffmpeg
children are separate processes, counted apart.

| phase | exports' wall s | samples | control VmRSS before (mean) | peak during | end (5 s after) | ffmpeg children's VmRSS, peak sum |
|---|---|---|---|---|---|---|
$(printf '%s\n' "${RSS_ROWS[@]}")

The control node's VmHWM at the end (peak since it started, section 1's 24 h playlists included): $(MIB "$HWM").

A fifth export asked 0.5 s after the four started (\`curl -w '%{http_code}, Retry-After: %header{retry-after}'\`):

$(printf -- '- %s\n' "${FIFTH[@]}")

| phase | export | curl status | wall s | bytes | ffprobe duration s | -count_frames (video) |
|---|---|---|---|---|---|---|
$(printf '%s\n' "${EXPORT_ROWS[@]}")

Expected frames: $EXPECTED_FRAMES (the same segments).
EOF
} >"$OUT"
log "wrote $OUT"
