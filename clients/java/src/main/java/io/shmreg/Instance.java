package io.shmreg;

import java.time.Duration;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A service instance, the value stored under svc/SERVICE/ID: a msgpack map
 * keyed by the field names below, as the Go writer's EncodeInstance
 * produces it. Every field is a copy, safe to keep.
 *
 * @param service  the service's name
 * @param id       the instance's id within the service
 * @param address  host name or IP address
 * @param port     0 - 65535
 * @param weight   relative weight for pickers (the writer stores at least 1)
 * @param metadata string pairs (empty if the value holds none), unmodifiable
 * @param health   "passing", "warning" or "critical"
 * @param ttl      how long the instance lives without a heartbeat (stored as integer nanoseconds)
 */
public record Instance(String service, String id, String address, int port, int weight,
        Map<String, String> metadata, String health, Duration ttl) {

    /**
     * Decodes an instance value. Fields it does not know are skipped (a
     * newer writer may add some); a missing field is empty (0, "", an empty
     * map), except that service and id are required.
     *
     * @throws ShmregException MALFORMED_VALUE if b is not a msgpack map, is
     *         cut short, has trailing bytes, holds a known field of the wrong
     *         type, or lacks service or id
     */
    public static Instance decode(byte[] b) {
        Msgpack r = new Msgpack(b);
        String service = "", id = "", address = "", health = "";
        long port = 0, weight = 0, ttl = 0;
        Map<String, String> meta = new LinkedHashMap<>();
        long n = r.mapHeader();
        for (long i = 0; i < n; i++) {
            String field = r.string();
            switch (field) {
                case "service" -> service = r.stringOrNil();
                case "id" -> id = r.stringOrNil();
                case "address" -> address = r.stringOrNil();
                case "health" -> health = r.stringOrNil();
                case "port" -> port = r.integer();
                case "weight" -> weight = r.integer();
                case "ttl" -> ttl = r.integer();
                case "metadata" -> {
                    meta.clear();
                    if (!r.nil()) {
                        long m = r.mapHeader();
                        for (long j = 0; j < m; j++) {
                            String k = r.string();
                            meta.put(k, r.stringOrNil());
                        }
                    }
                }
                default -> r.skip();
            }
        }
        r.end();
        if (service.isEmpty() || id.isEmpty()) {
            throw Msgpack.malformed("instance lacks service or id");
        }
        if (port < 0 || port > 65535) {
            throw Msgpack.malformed("instance port " + port + " out of range");
        }
        if (weight < Integer.MIN_VALUE || weight > Integer.MAX_VALUE) {
            throw Msgpack.malformed("instance weight " + weight + " out of range");
        }
        return new Instance(service, id, address, (int) port, (int) weight,
                Collections.unmodifiableMap(meta), health, Duration.ofNanos(ttl));
    }
}
