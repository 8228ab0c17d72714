"""python3 -m shmreg dump PATH [--prefix P] | get PATH KEY | instances PATH SERVICE

dump prints every live entry in key order exactly as `shmreg ls --format hex`
does: hex(key) TAB hex(value) NEWLINE (an empty value leaves nothing after
the tab). get prints hex(value) of one key (exit 1 if absent). instances
prints one line per instance. Errors go to stderr with exit status 1;
usage errors exit 2.
"""
import argparse
import sys

from . import Region, ShmregError


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m shmreg", description="read a shmreg region")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump", help="every entry, as `shmreg ls --format hex`")
    d.add_argument("path")
    d.add_argument("--prefix", default="", help="only keys starting with this (UTF-8) prefix")
    g = sub.add_parser("get", help="hex(value) of one key")
    g.add_argument("path")
    g.add_argument("key")
    i = sub.add_parser("instances", help="the instances of a service")
    i.add_argument("path")
    i.add_argument("service")
    args = ap.parse_args(argv)
    out = sys.stdout.buffer
    try:
        with Region(args.path) as r:
            if args.cmd == "dump":
                lines = []
                for k, v in r.items(args.prefix.encode("utf-8")):
                    lines.append(b"%s\t%s\n" % (k.hex().encode(), v.hex().encode()))
                    if len(lines) >= 1024:
                        out.write(b"".join(lines))
                        lines.clear()
                out.write(b"".join(lines))
            elif args.cmd == "get":
                v = r.get(args.key)
                if v is None:
                    print("shmreg: %s: no key %r" % (args.path, args.key), file=sys.stderr)
                    return 1
                out.write(v.hex().encode() + b"\n")
            else:
                for inst in r.instances(args.service):
                    out.write(("%s\t%s:%d\tweight=%d\thealth=%s\tttl=%gs\t%s\n" % (
                        inst.id, inst.address, inst.port, inst.weight, inst.health, inst.ttl_seconds,
                        ",".join("%s=%s" % kv for kv in sorted(inst.metadata.items())))).encode())
        out.flush()
    except (ShmregError, ValueError) as e:
        print("shmreg: %s" % e, file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
