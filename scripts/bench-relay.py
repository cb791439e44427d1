# bench-relay.py LISTEN_HOST UPSTREAM_HOST DELAY_S RATE_MBIT LISTEN_PORT:UPSTREAM_PORT...
#
# A TCP relay for the benchmarks' slow links (scripts/bench-diff.sh, scripts/bench-push.sh), for
# kernels without sch_netem: every chunk is delivered DELAY_S after it arrived, in each direction,
# in order (what `tc netem delay` does per packet), for every LISTEN_PORT:UPSTREAM_PORT pair given.
# With RATE_MBIT > 0 (for kernels without sch_tbf as well; 0: no cap) each direction is also a FIFO link of that capacity shared by every connection: a chunk
# leaves when the link is free and takes its size / rate to cross, then DELAY_S to arrive.
#
# Backpressure: at most QUEUE_BYTES are held per connection and direction; past that the relay
# stops reading, so the sender's TCP window closes as it would on a real link (without it, a
# sender would see loopback speed and the relay would buffer the whole transfer).
# What it does not model: the TCP handshake is not delayed, and the sender's congestion window
# grows at loopback speed (no slow start over the round trip).
import asyncio
import sys

LH, UH, DELAY = sys.argv[1], sys.argv[2], float(sys.argv[3])
RATE = float(sys.argv[4]) * 1e6 / 8 if float(sys.argv[4]) > 0 else None
PAIRS = [tuple(int(p) for p in pair.split(":")) for pair in sys.argv[5:]]
CHUNK = 64 << 10
QUEUE_BYTES = 4 << 20

# Per direction ("up": client to upstream, "down": back): when the link is free again.
link_free = {"up": 0.0, "down": 0.0}


async def pump(reader, writer, direction):
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()
    held = 0                      # bytes read and not yet written
    room = asyncio.Event()
    room.set()

    async def read():
        nonlocal held
        try:
            while True:
                await room.wait()
                data = await reader.read(CHUNK)
                now = loop.time()
                if RATE and data:
                    start = max(now, link_free[direction])
                    link_free[direction] = start + len(data) / RATE
                    due = link_free[direction] + DELAY
                else:
                    due = now + DELAY
                held += len(data)
                if held >= QUEUE_BYTES:
                    room.clear()
                queue.put_nowait((due, data))
                if not data:
                    return
        except Exception:
            queue.put_nowait((loop.time() + DELAY, b""))

    reading = asyncio.ensure_future(read())
    try:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()
            held -= len(data)
            if held < QUEUE_BYTES:
                room.set()
    except Exception:
        pass
    finally:
        reading.cancel()


async def handle(client_reader, client_writer, up_port):
    try:
        up_reader, up_writer = await asyncio.open_connection(UH, up_port)
    except Exception:
        client_writer.close()
        return
    await asyncio.gather(pump(client_reader, up_writer, "up"),
                         pump(up_reader, client_writer, "down"),
                         return_exceptions=True)
    for w in (client_writer, up_writer):
        w.close()


async def main():
    servers = []
    for listen_port, up_port in PAIRS:
        serve = lambda r, w, up=up_port: handle(r, w, up)
        servers.append(await asyncio.start_server(serve, LH, listen_port, backlog=256))
    await asyncio.gather(*(s.serve_forever() for s in servers))


asyncio.run(main())
