package io.shmreg;

import java.io.BufferedReader;
import java.io.InputStreamReader;

/**
 * A child process for SlotTest: opens the region, begins a read section
 * and stays in it. Prints "slot N token T" once inside. Reading "end" on
 * standard input ends the section and prints "ended" or "evicted"; end of
 * input exits. Killed with SIGKILL, it leaves its slot behind for the
 * writer to reap.
 */
public final class HoldSection {
    private HoldSection() {
    }

    public static void main(String[] args) throws Exception {
        Region r = Region.open(args[0]);
        r.beginForTest();
        ControlFile.Slot s = r.slotForTest();
        System.out.println("slot " + s.index + " token " + s.token);
        System.out.flush();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        for (String line; (line = in.readLine()) != null;) {
            if (line.equals("end")) {
                System.out.println(r.endForTest() ? "ended" : "evicted");
                System.out.flush();
            }
        }
        r.close();
    }
}
