package io.shmreg.bench;

import io.shmreg.Region;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Random;
import java.util.function.LongSupplier;

/**
 * Per-lookup cost of Region.get on a Go-written region, beside a
 * java.util.HashMap holding the same keys and values, in the same JVM and
 * run. Every lookup is of a present key, in a random order fixed for the
 * run (and, for the fixed cost, 1,000 of them cycled); each figure is the median of ROUNDS rounds over all keys, after
 * WARMUP rounds that let the JIT compile everything.
 *
 * <pre>java -cp shmreg.jar:bench REGION KEYFILE [ROUNDS]</pre>
 */
public final class Bench {
    private Bench() {
    }

    static long sink;

    public static void main(String[] args) throws Exception {
        int rounds = args.length > 2 ? Integer.parseInt(args[2]) : 9;
        int warmup = 5;
        List<String> lines = Files.readAllLines(Paths.get(args[1]), StandardCharsets.UTF_8);
        int n = lines.size();
        try (Region r = Region.open(args[0])) {
            byte[][] keys = new byte[n][];
            HashMap<ByteBuffer, byte[]> byBuffer = new HashMap<>();
            HashMap<String, byte[]> byString = new HashMap<>();
            for (int i = 0; i < n; i++) {
                keys[i] = lines.get(i).getBytes(StandardCharsets.UTF_8);
                byte[] v = r.get(keys[i]);
                if (v == null) {
                    throw new IllegalStateException("key " + lines.get(i) + " is not in the region");
                }
                byBuffer.put(ByteBuffer.wrap(keys[i].clone()), v);
                byString.put(new String(keys[i], StandardCharsets.UTF_8), v);
            }
            // The lookup keys are other objects than the maps' own keys, as
            // a caller's would be: a ByteBuffer hashes its bytes on every
            // call, a String caches its hash after the first.
            int[] order = new int[n];
            for (int i = 0; i < n; i++) {
                order[i] = i;
            }
            Random rnd = new Random(42);
            for (int i = n - 1; i > 0; i--) {
                int j = rnd.nextInt(i + 1);
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
            ByteBuffer[] bufKeys = new ByteBuffer[n];
            String[] strKeys = new String[n];
            for (int i = 0; i < n; i++) {
                bufKeys[i] = ByteBuffer.wrap(keys[order[i]].clone());
                strKeys[i] = new String(keys[order[i]], StandardCharsets.UTF_8);
            }
            byte[][] shmKeys = new byte[n][];
            for (int i = 0; i < n; i++) {
                shmKeys[i] = keys[order[i]].clone();
            }
            // Each variant's loop is a method of its own, so that each call
            // site stays monomorphic and is compiled for that variant alone.
            // The variants take turns within every round, so that a noisy
            // neighbour on a shared machine slows them alike.
            int small = Math.min(1000, n);
            byte[][] shmSmall = Arrays.copyOf(shmKeys, small);
            ByteBuffer[] bufSmall = Arrays.copyOf(bufKeys, small);
            String[] names = {
                "Region.get (copy of the value)",
                "HashMap<ByteBuffer,byte[]>.get",
                "HashMap<ByteBuffer,byte[]>.get + copy",
                "HashMap<String,byte[]>.get (cached hash)",
                "fixed cost: Region.get, 1K keys",
                "fixed cost: HashMap<ByteBuffer>.get + copy, 1K keys",
            };
            LongSupplier[] variants = {
                () -> region(r, shmKeys, n),
                () -> mapBuffer(byBuffer, bufKeys, n),
                () -> mapBufferCopy(byBuffer, bufKeys, n),
                () -> mapString(byString, strKeys, n),
                () -> region(r, shmSmall, n),
                () -> mapBufferCopy(byBuffer, bufSmall, n),
            };
            // Timed by this thread's CPU time, not the wall clock: on a
            // shared machine the wall clock also counts the time the thread
            // waited for a core, which says more about the neighbours.
            ThreadMXBean mx = ManagementFactory.getThreadMXBean();
            double[][] cpu = new double[variants.length][rounds];
            double[][] wall = new double[variants.length][rounds];
            for (int round = -warmup; round < rounds; round++) {
                for (int v = 0; v < variants.length; v++) {
                    long c0 = mx.getCurrentThreadCpuTime();
                    long t0 = System.nanoTime();
                    sink += variants[v].getAsLong();
                    long t = System.nanoTime() - t0;
                    long c = mx.getCurrentThreadCpuTime() - c0;
                    if (round >= 0) {
                        cpu[v][round] = (double) c / n;
                        wall[v][round] = (double) t / n;
                    }
                }
            }
            System.out.printf("%d keys in random order (the fixed-cost lines cycle through %d of them), %d warm-up rounds,%n"
                    + "median of %d rounds, ns per lookup of the thread's CPU time (and of the wall clock)%n", n, small, warmup, rounds);
            for (int v = 0; v < variants.length; v++) {
                report(names[v], cpu[v], wall[v]);
            }
        }
        if (sink == 42) {
            System.out.println();
        }
    }

    static long region(Region r, byte[][] keys, int n) {
        long sum = 0;
        for (int i = 0, j = 0; i < n; i++, j = j + 1 == keys.length ? 0 : j + 1) {
            sum += r.get(keys[j]).length;
        }
        return sum;
    }

    static long mapBuffer(HashMap<ByteBuffer, byte[]> m, ByteBuffer[] keys, int n) {
        long sum = 0;
        for (int i = 0, j = 0; i < n; i++, j = j + 1 == keys.length ? 0 : j + 1) {
            sum += m.get(keys[j]).length;
        }
        return sum;
    }

    static long mapBufferCopy(HashMap<ByteBuffer, byte[]> m, ByteBuffer[] keys, int n) {
        long sum = 0;
        for (int i = 0, j = 0; i < n; i++, j = j + 1 == keys.length ? 0 : j + 1) {
            sum += m.get(keys[j]).clone().length;
        }
        return sum;
    }

    static long mapString(HashMap<String, byte[]> m, String[] keys, int n) {
        long sum = 0;
        for (int i = 0, j = 0; i < n; i++, j = j + 1 == keys.length ? 0 : j + 1) {
            sum += m.get(keys[j]).length;
        }
        return sum;
    }

    static double median(double[] x) {
        double[] sorted = x.clone();
        Arrays.sort(sorted);
        return sorted[x.length / 2];
    }

    static void report(String name, double[] cpu, double[] wall) {
        double[] sorted = cpu.clone();
        Arrays.sort(sorted);
        System.out.printf("%-52s cpu median %7.1f (min %7.1f, max %7.1f)   wall median %7.1f%n", name, median(cpu), sorted[0],
                sorted[cpu.length - 1], median(wall));
    }
}
