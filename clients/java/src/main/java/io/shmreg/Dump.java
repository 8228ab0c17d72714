package io.shmreg;

import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;

/**
 * Prints every live entry of a region in key order, exactly as
 * {@code shmreg ls --region PATH --format hex} does: hex(key), a tab,
 * hex(value), a newline (an empty value leaves nothing after the tab).
 *
 * <pre>java -cp shmreg.jar io.shmreg.Dump PATH [PREFIX]</pre>
 *
 * Exit status 0, or 1 with a message on standard error.
 */
public final class Dump {
    private Dump() {
    }

    public static void main(String[] args) {
        if (args.length < 1 || args.length > 2) {
            System.err.println("usage: java -cp shmreg.jar io.shmreg.Dump PATH [PREFIX]");
            System.exit(2);
        }
        OutputStream out = new BufferedOutputStream(System.out, 1 << 16);
        try (Region r = Region.open(args[0])) {
            byte[] prefix = args.length > 1 ? args[1].getBytes(StandardCharsets.UTF_8) : new byte[0];
            IOException[] failed = {null};
            r.scan(prefix, (k, v) -> {
                if (failed[0] != null) {
                    return;
                }
                try {
                    out.write(Region.hex(k).getBytes(StandardCharsets.US_ASCII));
                    out.write('\t');
                    out.write(Region.hex(v).getBytes(StandardCharsets.US_ASCII));
                    out.write('\n');
                } catch (IOException e) {
                    failed[0] = e;
                }
            });
            out.flush();
            if (failed[0] != null) {
                throw failed[0];
            }
        } catch (ShmregException | IOException e) {
            System.err.println(e.getMessage());
            System.exit(1);
        }
    }
}
