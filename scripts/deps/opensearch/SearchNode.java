import java.util.Arrays;

import org.codelibs.opensearch.runner.OpenSearchRunner;

/**
 * One OpenSearch node of the `scripts/deps.sh up --cluster` search cluster, in a JVM of its own so
 * that a drill can SIGKILL exactly one node. Started in Java's source-file mode, with the runner's
 * jars on the class path:
 *
 * <pre>java -Ddeps.node.name=search-2 -cp JARS SearchNode.java -basePath DIR -numOfNode 1 -clusterName C -baseHttpPort 29200</pre>
 *
 * The arguments are the runner's own (OpenSearchRunner's main). This wrapper exists for two
 * things that main cannot do: the runner only hands out HTTP ports up to 9299 (the cluster's live
 * at 29200-29202), and it names every node "Node 1" when each JVM starts one node. The rest of
 * the node's settings (transport port, discovery, bootstrap) come from the opensearch.yml the
 * script writes into the node's config directory.
 */
public final class SearchNode {
    private SearchNode() {
    }

    public static void main(final String[] args) throws Exception {
        final String name = System.getProperty("deps.node.name");
        if (name == null || name.isEmpty()) {
            System.err.println("SearchNode: -Ddeps.node.name is required");
            System.exit(2);
        }
        final OpenSearchRunner runner = new OpenSearchRunner();
        runner.setMaxHttpPort(-1);
        runner.onBuild((index, settings) -> settings.put("node.name", name));
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                runner.close();
            } catch (final Exception e) {
                System.err.println("SearchNode: close: " + e);
            }
        }));
        try {
            runner.build(args);
        } catch (final RuntimeException e) {
            System.err.println("SearchNode: start failed with " + Arrays.toString(args));
            e.printStackTrace();
            System.exit(1);
        }
        while (!runner.isClosed()) {
            Thread.sleep(5000);
        }
    }
}
