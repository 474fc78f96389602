// The KCL peer of `make bench-peers`: a KCL 3 consumer that counts records and bytes, checkpoints every N seconds,
// and serves its counters on a loopback /metrics port (the same way the driver reads kinesis-ingester's).
package dev.kinesisoperator.bench;

import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.io.BufferedOutputStream;
import java.io.FileOutputStream;
import java.io.FileDescriptor;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.awssdk.http.Protocol;
import software.amazon.awssdk.http.nio.netty.NettyNioAsyncHttpClient;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.cloudwatch.CloudWatchAsyncClient;
import software.amazon.awssdk.services.dynamodb.DynamoDbAsyncClient;
import software.amazon.awssdk.services.kinesis.KinesisAsyncClient;
import software.amazon.kinesis.common.ConfigsBuilder;
import software.amazon.kinesis.common.InitialPositionInStream;
import software.amazon.kinesis.common.InitialPositionInStreamExtended;
import software.amazon.kinesis.coordinator.CoordinatorConfig;
import software.amazon.kinesis.coordinator.Scheduler;
import software.amazon.kinesis.leases.LeaseAssignmentStrategy;
import software.amazon.kinesis.leases.LeaseManagementConfig;
import software.amazon.kinesis.lifecycle.events.InitializationInput;
import software.amazon.kinesis.lifecycle.events.LeaseLostInput;
import software.amazon.kinesis.lifecycle.events.ProcessRecordsInput;
import software.amazon.kinesis.lifecycle.events.ShardEndedInput;
import software.amazon.kinesis.lifecycle.events.ShutdownRequestedInput;
import software.amazon.kinesis.metrics.MetricsLevel;
import software.amazon.kinesis.metrics.NullMetricsFactory;
import software.amazon.kinesis.processor.ShardRecordProcessor;
import software.amazon.kinesis.retrieval.KinesisClientRecord;
import software.amazon.kinesis.retrieval.polling.PollingConfig;

public final class KclPeer {
    static final AtomicLong RECORDS = new AtomicLong();
    static final AtomicLong BYTES = new AtomicLong();
    static final AtomicLong SHARDS = new AtomicLong();
    static final AtomicLong LEASES_TAKEN = new AtomicLong();
    static final AtomicLong FIRST_LEASE_MS = new AtomicLong(-1);
    static final long START = System.currentTimeMillis();
    static long checkpointMillis = 10_000;
    /** With --echo, every record's data is written to stdout as one line (the latency runs). */
    static PrintStream echo;

    public static void main(String[] argv) throws Exception {
        Map<String, String> a = new HashMap<>();
        for (int i = 0; i + 1 < argv.length; i += 2) {
            a.put(argv[i].replaceFirst("^--", ""), argv[i + 1]);
        }
        String stream = a.getOrDefault("stream", "bench");
        String app = a.getOrDefault("app", "kcl-peer");
        String worker = a.getOrDefault("worker", "worker-" + ProcessHandle.current().pid());
        URI kinesis = URI.create(a.get("kinesis"));
        URI dynamodb = URI.create(a.get("dynamodb"));
        int metricsPort = Integer.parseInt(a.getOrDefault("metrics-port", "0"));
        checkpointMillis = Long.parseLong(a.getOrDefault("checkpoint-seconds", "10")) * 1000;
        long failoverMillis = Long.parseLong(a.getOrDefault("failover-ms", "10000"));
        if ("true".equals(a.get("echo"))) {
            echo = new PrintStream(new BufferedOutputStream(new FileOutputStream(FileDescriptor.out), 1 << 16), false);
        }

        StaticCredentialsProvider creds =
                StaticCredentialsProvider.create(AwsBasicCredentials.create("000000000000", "bench"));
        Region region = Region.US_EAST_1;
        KinesisAsyncClient kinesisClient = KinesisAsyncClient.builder()
                .endpointOverride(kinesis)
                .region(region)
                .credentialsProvider(creds)
                .httpClientBuilder(NettyNioAsyncHttpClient.builder()
                        .protocol(Protocol.HTTP1_1)
                        .maxConcurrency(Integer.MAX_VALUE)
                        .readTimeout(Duration.ofSeconds(120)))
                .build();
        DynamoDbAsyncClient dynamoClient = DynamoDbAsyncClient.builder()
                .endpointOverride(dynamodb)
                .region(region)
                .credentialsProvider(creds)
                .httpClientBuilder(NettyNioAsyncHttpClient.builder().protocol(Protocol.HTTP1_1))
                .build();
        // Never called (MetricsLevel.NONE and a null metrics factory), but pointed at loopback all the same.
        CloudWatchAsyncClient cloudWatchClient = CloudWatchAsyncClient.builder()
                .endpointOverride(dynamodb)
                .region(region)
                .credentialsProvider(creds)
                .httpClientBuilder(NettyNioAsyncHttpClient.builder().protocol(Protocol.HTTP1_1))
                .build();

        ConfigsBuilder configs = new ConfigsBuilder(
                stream, app, kinesisClient, dynamoClient, cloudWatchClient, worker, Processor::new);
        InitialPositionInStreamExtended trimHorizon =
                InitialPositionInStreamExtended.newInitialPosition(InitialPositionInStream.TRIM_HORIZON);
        LeaseManagementConfig leases = configs.leaseManagementConfig()
                .initialPositionInStream(trimHorizon)
                .failoverTimeMillis(failoverMillis)
                .leaseAssignmentStrategy(LeaseAssignmentStrategy.LEASE_COUNT_BASED);
        // With worker metrics on, KCL probes the EC2 metadata address: it must never be called here.
        leases.workerUtilizationAwareAssignmentConfig().disableWorkerMetrics(true);
        if (a.containsKey("reporter-ms")) {
            // The leader assigns leases only to workers that have reported stats once: the short
            // form reports sooner than KCL's default to start reading sooner.
            leases.workerUtilizationAwareAssignmentConfig()
                    .workerMetricsReporterFreqInMillis(Long.parseLong(a.get("reporter-ms")));
        }
        PollingConfig polling = new PollingConfig(stream, kinesisClient)
                .maxRecords(10_000)
                .idleTimeBetweenReadsInMillis(PollingConfig.MIN_IDLE_MILLIS_BETWEEN_READS)
                .kinesisRequestTimeout(Duration.ofSeconds(120));
        Scheduler scheduler = new Scheduler(
                configs.checkpointConfig(),
                configs.coordinatorConfig().clientVersionConfig(CoordinatorConfig.ClientVersionConfig.CLIENT_VERSION_CONFIG_3X),
                leases,
                configs.lifecycleConfig(),
                configs.metricsConfig().metricsLevel(MetricsLevel.NONE).metricsFactory(new NullMetricsFactory()),
                configs.processorConfig(),
                configs.retrievalConfig().retrievalSpecificConfig(polling).initialPositionInStreamExtended(trimHorizon));

        serveMetrics(metricsPort);
        Thread run = new Thread(scheduler, "kcl-scheduler");
        run.setDaemon(false);
        run.start();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                scheduler.startGracefulShutdown().get();
            } catch (Exception e) {
                System.err.println("graceful shutdown failed: " + e);
            }
        }));
        run.join();
    }

    static void serveMetrics(int port) throws IOException {
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 0);
        server.createContext("/metrics", exchange -> {
            String body = "kcl_peer_records_total " + RECORDS.get() + "\n"
                    + "kcl_peer_bytes_total " + BYTES.get() + "\n"
                    + "kcl_peer_shards_reading " + SHARDS.get() + "\n"
                    + "kcl_peer_leases_taken_total " + LEASES_TAKEN.get() + "\n"
                    + "kcl_peer_first_lease_millis " + FIRST_LEASE_MS.get() + "\n";
            byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
            exchange.sendResponseHeaders(200, bytes.length);
            try (OutputStream out = exchange.getResponseBody()) {
                out.write(bytes);
            }
        });
        server.start();
        System.err.println("kcl-peer metrics on 127.0.0.1:" + server.getAddress().getPort());
    }

    /** Counts records and bytes; checkpoints at most every checkpointMillis, and at shard end. */
    static final class Processor implements ShardRecordProcessor {
        private long lastCheckpoint = System.currentTimeMillis();
        private boolean reading;

        @Override
        public void initialize(InitializationInput input) {
            FIRST_LEASE_MS.compareAndSet(-1, System.currentTimeMillis() - START);
            LEASES_TAKEN.incrementAndGet();
            SHARDS.incrementAndGet();
            reading = true;
        }

        @Override
        public void processRecords(ProcessRecordsInput input) {
            long bytes = 0;
            for (KinesisClientRecord r : input.records()) {
                int n = r.data().remaining();
                bytes += n;
                if (echo != null) {
                    byte[] b = new byte[n];
                    r.data().duplicate().get(b);
                    echo.write(b, 0, n);
                    echo.write('\n');
                }
            }
            if (echo != null) {
                echo.flush();
            }
            RECORDS.addAndGet(input.records().size());
            BYTES.addAndGet(bytes);
            long now = System.currentTimeMillis();
            if (now - lastCheckpoint >= checkpointMillis) {
                try {
                    input.checkpointer().checkpoint();
                } catch (Exception e) {
                    System.err.println("checkpoint failed: " + e);
                }
                lastCheckpoint = now;
            }
        }

        private void stopped() {
            if (reading) {
                reading = false;
                SHARDS.decrementAndGet();
            }
        }

        @Override
        public void leaseLost(LeaseLostInput input) {
            stopped();
        }

        @Override
        public void shardEnded(ShardEndedInput input) {
            stopped();
            try {
                input.checkpointer().checkpoint();
            } catch (Exception e) {
                System.err.println("shard-end checkpoint failed: " + e);
            }
        }

        @Override
        public void shutdownRequested(ShutdownRequestedInput input) {
            stopped();
            try {
                input.checkpointer().checkpoint();
            } catch (Exception e) {
                System.err.println("shutdown checkpoint failed: " + e);
            }
        }
    }
}
