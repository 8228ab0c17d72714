package io.shmreg;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * What the tests run: the Go writer (xlang), the shmreg CLI, the C probe,
 * built once by clients/java/test.sh and named by environment variables.
 * A missing one fails the test (it is never skipped).
 */
final class Env {
    private Env() {
    }

    static String need(String var) {
        String v = System.getenv(var);
        if (v == null || v.isEmpty()) {
            fail("environment variable " + var + " is not set: run clients/java/test.sh");
        }
        return v;
    }

    static Path repo() {
        return Paths.get(need("SHMREG_REPO"));
    }

    static String xlang() {
        return need("SHMREG_XLANG");
    }

    /** The class path of the jar and the tests, for child JVMs. */
    static String classpath() {
        return need("SHMREG_CLASSPATH");
    }

    static String java() {
        return ProcessHandle.current().info().command().orElse("java");
    }

    static String xlangbench() {
        return need("SHMREG_XLANGBENCH");
    }

    static String shmreg() {
        return need("SHMREG_BIN");
    }

    static String ofdprobe() {
        return need("SHMREG_OFDPROBE");
    }

    /** A fresh directory for one test's regions. */
    static Path dir(String name) throws IOException {
        Path base = Paths.get(need("SHMREG_TESTDIR"));
        Files.createDirectories(base);
        return Files.createTempDirectory(base, name + "-");
    }

    /** Runs a command to completion; fails the test unless it exits 0. Returns its standard output. */
    static byte[] run(String... cmd) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT).start();
        byte[] out = readAll(p.getInputStream());
        if (!p.waitFor(60, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            fail(Arrays.toString(cmd) + " did not finish");
        }
        assertEquals(0, p.exitValue(), Arrays.toString(cmd) + " failed");
        return out;
    }

    static String runText(String... cmd) throws IOException, InterruptedException {
        return new String(run(cmd), StandardCharsets.UTF_8).trim();
    }

    static byte[] readAll(InputStream in) throws IOException {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        in.transferTo(b);
        return b.toByteArray();
    }

    /** Starts a command (a writer running for a while); its output goes to ours. */
    static Process start(String... cmd) throws IOException {
        return new ProcessBuilder(cmd).inheritIO().start();
    }

    /** A Java child process running main class cls with this JVM's class path. */
    static Process startJava(Class<?> cls, String... args) throws IOException {
        List<String> cmd = new ArrayList<>();
        cmd.add(ProcessHandle.current().info().command().orElse("java"));
        cmd.add("-cp");
        cmd.add(classpath());
        cmd.add(cls.getName());
        cmd.addAll(Arrays.asList(args));
        return new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT).start();
    }

    /** Waits until both files of a region exist (a writer just started). */
    static void awaitRegion(Path p) throws InterruptedException {
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (!(Files.exists(p) && Files.exists(Paths.get(p + ".ctl")))) {
            if (System.nanoTime() > end) {
                fail("no region appeared at " + p);
            }
            Thread.sleep(5);
        }
    }

    /** A fixture region (xlang fixture) in a fresh directory. */
    static Path fixture(String name) throws IOException, InterruptedException {
        Path p = dir(name).resolve("fixture");
        run(xlang(), "fixture", p.toString());
        return p;
    }

    /** shmreg ls --format hex of the region at p (or of the keys under prefix). */
    static byte[] lsHex(Path p) throws IOException, InterruptedException {
        return run(shmreg(), "ls", "--region", p.toString(), "--format", "hex");
    }

    static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static String str(byte[] b) {
        return new String(b, StandardCharsets.UTF_8);
    }
}
