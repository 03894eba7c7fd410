// Side-by-side throughput of event-ruler on the shared pattern corpus
// (gen_pattern_corpus.py OUTDIR): for each operator kind, the 5 rules in one
// Machine, rulesForJSONEvent over the 900-byte events on one thread, JIT
// warmed first. Prints "kind events/s events/cpu-s" per line.
// Usage: java -cp CLASSPATH Bench.java CORPUS_DIR [seconds per kind]
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import software.amazon.event.ruler.Machine;

public class Bench {
    public static void main(String[] args) throws Exception {
        Path dir = Path.of(args[0]);
        double seconds = args.length > 1 ? Double.parseDouble(args[1]) : 3;
        List<String> events = Files.readAllLines(dir.resolve("events.jsonl"), StandardCharsets.UTF_8);
        String[] kinds = {"exact", "prefix", "suffix", "numeric", "anything-but", "wildcard", "cidr", "or", "array"};
        ThreadMXBean tmx = ManagementFactory.getThreadMXBean();
        long sink = 0;
        for (String kind : kinds) {
            Machine m = new Machine();
            int i = 0;
            for (String rule : Files.readAllLines(dir.resolve("rules-" + kind + ".jsonl"), StandardCharsets.UTF_8)) {
                m.addRule(kind + "-" + i++, rule);
            }
            long warmEnd = System.nanoTime() + (long) (seconds * 1e9);
            int k = 0;
            while (System.nanoTime() < warmEnd) {
                sink += m.rulesForJSONEvent(events.get(k++ % events.size())).size();
            }
            long n = 0;
            long cpu0 = tmx.getCurrentThreadCpuTime();
            long t0 = System.nanoTime();
            long end = t0 + (long) (seconds * 1e9);
            while (true) {
                for (int j = 0; j < 1000; j++) {
                    sink += m.rulesForJSONEvent(events.get(k++ % events.size())).size();
                }
                n += 1000;
                if (System.nanoTime() >= end) {
                    break;
                }
            }
            double wall = (System.nanoTime() - t0) / 1e9;
            double cpu = (tmx.getCurrentThreadCpuTime() - cpu0) / 1e9;
            System.out.printf("%s %.0f %.0f%n", kind, n / wall, n / cpu);
        }
        if (sink == 42) {
            System.out.println();
        }
    }
}
