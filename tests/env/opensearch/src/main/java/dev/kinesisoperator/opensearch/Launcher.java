package dev.kinesisoperator.opensearch;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.transport.Netty4Plugin;

/**
 * One OpenSearch node for the test environment (tests/env/opensearch.sh): single-node discovery,
 * no security plugin, bound to 127.0.0.1, HTTP and transport over netty4 on the given ports,
 * data under the given home directory. Runs until the process is terminated.
 *
 * <p>Usage: {@code Launcher HOME HTTP_PORT TRANSPORT_PORT}. With the system property
 * {@code kinesis.operator.parent.pid} set, the node also stops when that process is gone, so a test
 * binary that started it (and was killed) leaves no node behind.
 */
public final class Launcher {
    private Launcher() {}

    /** {@link Node}'s plugin-taking constructor is protected: the netty4 transport is a plugin on the class path. */
    private static final class LocalNode extends Node {
        LocalNode(Environment environment) {
            super(environment, List.of(Netty4Plugin.class), true);
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: Launcher HOME HTTP_PORT TRANSPORT_PORT");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        Files.createDirectories(home.resolve("config"));
        Settings settings = Settings.builder()
                .put("path.home", home.toString())
                .put("path.data", home.resolve("data").toString())
                .put("path.logs", home.resolve("logs").toString())
                .put("cluster.name", "kinesis-operator-test")
                .put("node.name", "node-0")
                .put("discovery.type", "single-node")
                .put("network.host", "127.0.0.1")
                .put("http.port", args[1])
                .put("transport.port", args[2])
                .put("http.type", "netty4")
                .put("transport.type", "netty4")
                // A shared test machine's disk may be fuller than the default watermarks allow.
                .put("cluster.routing.allocation.disk.threshold_enabled", false)
                .build();
        LogConfigurator.configureWithoutConfig(settings);
        Environment environment =
                InternalSettingsPreparer.prepareEnvironment(settings, Map.of(), home.resolve("config"), () -> "node-0");
        Node node = new LocalNode(environment);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                stopped.countDown();
            }
        }, "opensearch-shutdown"));
        node.start();
        String parent = System.getProperty("kinesis.operator.parent.pid", "");
        if (!parent.isEmpty()) {
            ProcessHandle.of(Long.parseLong(parent)).ifPresentOrElse(
                    p -> p.onExit().thenRun(() -> System.exit(0)),
                    () -> System.exit(0));
        }
        System.out.println("opensearch-launcher: started on http://127.0.0.1:" + args[1]);
        stopped.await();
    }
}
