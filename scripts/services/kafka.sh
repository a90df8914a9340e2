#!/usr/bin/env bash
# A private Apache Kafka for development and tests: one KRaft node that is broker and controller at
# once, 127.0.0.1 only, its own ports, small heap. The broker's jars come from Maven Central through
# kafka/pom.xml (the version is pinned there) and are cached between runs.
#
#   kafka.sh start      install Java/Maven if needed, fetch the jars, format the storage once,
#                       start the broker, wait until it answers the Kafka protocol
#   kafka.sh stop       stop it (SIGTERM, SIGKILL after 60 s); stopping a stopped broker is fine
#   kafka.sh kill9      kill it with SIGKILL, for crash tests; the next start recovers the logs
#   kafka.sh status     say whether it runs and answers (exit 0) or not (exit 3)
#   kafka.sh bootstrap  print the bootstrap servers
#
# Settings: IMGPROC_DEV_SERVICES_DIR (default <repo>/var/services), IMGPROC_DEV_CACHE_DIR (default
# <repo>/var/cache), IMGPROC_DEV_KAFKA_PORT (default 29092), IMGPROC_DEV_KAFKA_CONTROLLER_PORT
# (default 29093), IMGPROC_DEV_KAFKA_HEAP (default 512m), IMGPROC_DEV_KAFKA_START_TIMEOUT (seconds,
# default 120).
#
# Topics are not created on first use (auto.create.topics.enable=false), as in production: create
# them with the admin API, e.g. kafka-python's KafkaAdminClient.create_topics. New topics get 6
# partitions unless asked otherwise. Messages survive a stop; delete the service folder to start
# from nothing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/lib.sh
source "$here/lib.sh"
repo="$(cd "$here/../.." && pwd)"
services_dir="${IMGPROC_DEV_SERVICES_DIR:-$repo/var/services}"
cache_dir="${IMGPROC_DEV_CACHE_DIR:-$repo/var/cache}/kafka"
pom="$here/kafka/pom.xml"
libs="$cache_dir/libs"
base="$services_dir/kafka"
data="$base/data"
config="$base/server.properties"
log_config="$base/log4j2.properties"
pid_file="$base/kafka.pid"
log_file="$base/kafka.log"
out_file="$base/kafka.out"
host="127.0.0.1"
port="${IMGPROC_DEV_KAFKA_PORT:-29092}"
controller_port="${IMGPROC_DEV_KAFKA_CONTROLLER_PORT:-29093}"
heap="${IMGPROC_DEV_KAFKA_HEAP:-512m}"
start_timeout="${IMGPROC_DEV_KAFKA_START_TIMEOUT:-120}"
stop_timeout=60
java="${JAVA_HOME:+$JAVA_HOME/bin/}java"

install_tool() {
    if [[ "$(id -u)" -ne 0 ]]; then
        die "$1 is missing and installing it needs root: apt-get install ${*:2}"
    fi
    command -v apt-get >/dev/null || die "$1 is missing and apt-get is not available: install ${*:2}"
    apt_get_install "${@:2}"
}

java_major() {
    "$java" -version 2>&1 | sed -nE '1s/.*version "([0-9]+)[."].*/\1/p'
}

# The Kafka 4 broker needs Java 17 or newer; Maven only fetches the jars.
ensure_tools() {
    command -v "$java" >/dev/null || install_tool "Java" default-jre-headless
    local major
    major="$(java_major)"
    if [[ -z "$major" ]] || ((major < 17)); then
        die "the Kafka broker needs Java 17 or newer, '$java' is ${major:-of unknown version}: set JAVA_HOME"
    fi
    command -v mvn >/dev/null || install_tool "Maven" maven
}

# The jars are fetched again whenever kafka/pom.xml changes (a new Kafka version, say).
ensure_libs() {
    local stamp
    stamp="$(sha256sum "$pom" | cut -d' ' -f1)"
    if [[ -f "$libs/.pom.sha256" && "$(<"$libs/.pom.sha256")" == "$stamp" ]]; then
        return 0
    fi
    local fresh="$libs.part" started
    started="$(now_ms)"
    say "fetching the broker's jars with Maven into $libs"
    rm -rf "$fresh"
    mkdir -p "$cache_dir"
    if ! mvn -B -q -Dstyle.color=never -f "$pom" -DoutputDirectory="$fresh" >"$cache_dir/fetch.log" 2>&1; then
        tail -n 30 "$cache_dir/fetch.log" >&2
        die "Maven could not fetch the Kafka jars (log: $cache_dir/fetch.log)"
    fi
    compgen -G "$fresh/kafka_2.13-*.jar" >/dev/null || die "Maven ran but no kafka_2.13 jar is in $fresh"
    echo "$stamp" >"$fresh/.pom.sha256"
    rm -rf "$libs"
    mv "$fresh" "$libs"
    say "fetched $(find "$libs" -name '*.jar' | wc -l) jars ($(du -sh "$libs" | cut -f1)) in $(seconds_since "$started")"
}

write_config() {
    cat >"$config" <<EOF
# Written by kafka.sh on every start: a one-node development cluster.
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://$host:$port,CONTROLLER://$host:$controller_port
advertised.listeners=PLAINTEXT://$host:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
controller.quorum.voters=1@$host:$controller_port
log.dirs=$data
num.partitions=6
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
# After a crash the controller refuses the restarted broker until the old session expires (9 s by
# default); the broker heartbeats its own controller in the same process, so shorter is safe.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=4000
# One node: every internal topic has one replica, and few partitions keep first use fast.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
EOF
    cat >"$log_config" <<EOF
# Written by kafka.sh: everything to one file, without the configuration dumps.
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = $log_file
appender.file.filePattern = $log_file.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 2
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
EOF
}

jvm_options=(-Xms128m "-Xmx$heap" -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
    -Djava.net.preferIPv4Stack=true
    "-Dlog4j2.configurationFile=$log_config" -cp "$libs/*")

# A Kafka cluster id is 16 random bytes in unpadded base64url; one starting with '-' would read
# as an option.
new_cluster_id() {
    local id
    while :; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        [[ "$id" != -* ]] && break
    done
    echo "$id"
}

format_storage() {
    [[ -f "$data/meta.properties" ]] && return 0
    local id
    id="$(new_cluster_id)"
    say "formatting $data for cluster $id"
    mkdir -p "$data"
    "$java" "${jvm_options[@]}" kafka.tools.StorageTool format -t "$id" -c "$config" >"$base/format.log" 2>&1 \
        || { cat "$base/format.log" >&2; die "formatting the storage failed"; }
}

running_pid() {
    pid_from_file "$pid_file" kafka.Kafka
}

# Sends a Metadata request (version 4, no topics) and reads the head of the answer: size,
# correlation id, throttle time, broker count. The broker lists itself only once it is unfenced,
# that is ready to lead partitions, so an answer with one broker means topics can be created.
answers_metadata() (
    exec 3<>"/dev/tcp/$host/$port" || return 1
    printf '\x00\x00\x00\x14\x00\x03\x00\x04\x00\x00\x00\x07\x00\x05probe\x00\x00\x00\x00\x00' >&3
    local head
    head="$(timeout 5 head -c 16 <&3 | od -An -v -tu1)" || return 1
    local -a b
    read -r -a b <<<"$head"
    ((${#b[@]} == 16 && b[7] == 7)) || return 1
    (((b[12] << 24 | b[13] << 16 | b[14] << 8 | b[15]) >= 1))
) 2>/dev/null

wait_until_ready() {
    local started="$1" outcome=0
    await_ready "$started" "$start_timeout" 0.2 running_pid answers_metadata || outcome=$?
    case "$outcome" in
    0)
        say "ready at $(cmd_bootstrap) (pid $(running_pid), $(seconds_since "$started"))"
        return 0
        ;;
    1)
        show_log_tail "$out_file" "$log_file"
        say "error: the broker exited during start-up (logs: $out_file, $log_file)"
        ;;
    *)
        show_log_tail "$out_file" "$log_file"
        say "error: no Kafka answer from $host:$port within ${start_timeout}s (logs: $out_file, $log_file)"
        ;;
    esac
    return 1
}

launch() {
    local p
    for p in "$port" "$controller_port"; do
        if port_in_use "$p"; then
            die "$host:$p is already in use, but not by $pid_file: stop that process or set IMGPROC_DEV_KAFKA_PORT / IMGPROC_DEV_KAFKA_CONTROLLER_PORT"
        fi
    done
    rm -f "$pid_file"
    spawn_detached "$pid_file" "$out_file" "$java" "${jvm_options[@]}" kafka.Kafka "$config"
    if ! await_pid_file running_pid; then
        rm -f "$pid_file"
        show_log_tail "$out_file" "$log_file"
        die "the broker did not come up (logs: $out_file, $log_file)"
    fi
}

cmd_start() {
    ensure_tools
    mkdir -p "$base" "$data"
    # Two starts at once (parallel test runs) must not both fetch, format or launch.
    take_start_lock "$base/.lock"
    ensure_libs
    local started
    started="$(now_ms)"
    if running_pid >/dev/null; then
        say "already running on $host:$port"
        wait_until_ready "$started" || exit 1
    else
        rotate_logs "$out_file" "$log_file"
        write_config
        format_storage
        say "starting on $host:$port (controller $host:$controller_port)"
        launch
        if ! wait_until_ready "$started"; then
            cmd_stop
            exit 1
        fi
    fi
    release_start_lock
}

cmd_stop() {
    stop_running "$pid_file" "$stop_timeout"
}

cmd_kill9() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$pid_file"
        say "not running"
        return 0
    fi
    kill -KILL "$pid" 2>/dev/null || true
    while is_alive "$pid"; do
        sleep 0.05
    done
    rm -f "$pid_file"
    say "killed pid $pid"
}

cmd_status() {
    local pid
    if pid="$(running_pid)"; then
        if answers_metadata; then
            echo "running at $(cmd_bootstrap) (pid $pid)"
            return 0
        fi
        echo "pid $pid is up but does not answer Kafka requests on $host:$port"
        return 1
    fi
    echo "not running"
    return 3
}

cmd_bootstrap() {
    echo "$host:$port"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
kill9) cmd_kill9 ;;
status) cmd_status ;;
bootstrap) cmd_bootstrap ;;
*)
    echo "usage: $0 start|stop|kill9|status|bootstrap" >&2
    exit 2
    ;;
esac
