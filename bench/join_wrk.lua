-- wrk script for bench/join.py: sends every prepared request exactly once, then stops.
--
--   wrk -t<threads> -c<connections> -d<bound>s --timeout 30s -s bench/join_wrk.lua <url> -- <requests file> <threads>
--
-- The requests file holds one request per line: the body, then the headers as name, value, name,
-- value, ..., every field separated by a tab (no field holds a tab or a newline). Each request is a
-- POST to the URL's path. Thread i (from 0) of n takes lines i*lines/n + 1 to (i+1)*lines/n.
--
-- wrk keeps every connection busy until -d has passed, so here:
-- * delay() lets a connection send only while its thread has requests left, then parks it;
-- * response() counts statuses, and once the thread has as many responses as requests it notes the
--   time, says "WRKTHREADDONE <id>" on stderr and stops the thread. wrk's main thread still sleeps
--   for the whole -d: bench/join.py interrupts it (SIGINT) when every thread has said so;
-- * done() prints one line, "WRKJSON {...}": summary.duration, requests and errors, the latency
--   percentiles (microseconds), the statuses summed over the threads, and span_us, the time from
--   the first thread's start to the last response (which the SIGINT does not lengthen).

local ffi = require("ffi")
ffi.cdef([[
struct join_wrk_timespec { long tv_sec; long tv_nsec; };
int clock_gettime(int clock_id, struct join_wrk_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local PARK_MS = 24 * 3600 * 1000

local function now_us()
    local ts = ffi.new("struct join_wrk_timespec")
    ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
    return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

-- The main Lua state: numbers the threads and keeps them for done().

local threads = {}

function setup(thread)
    thread:set("id", #threads)
    threads[#threads + 1] = thread
end

-- Each thread's own Lua state. done() reads the globals below with thread:get.

local slice = {} -- this thread's requests, rendered
local reserved = 0 -- requests delay() has let through
local sent = 0 -- requests request() has handed out
local started = false
received = 0
statuses = {}
first_us = nil
last_us = nil

function init(args)
    local lines = {}
    for line in io.lines(args[1]) do
        lines[#lines + 1] = line
    end
    local nthreads = tonumber(args[2])
    for i = math.floor(id * #lines / nthreads) + 1, math.floor((id + 1) * #lines / nthreads) do
        local fields = {}
        for field in (lines[i] .. "\t"):gmatch("([^\t]*)\t") do
            fields[#fields + 1] = field
        end
        local headers = {}
        for j = 2, #fields - 1, 2 do
            headers[fields[j]] = fields[j + 1]
        end
        slice[#slice + 1] = wrk.format("POST", nil, headers, fields[1])
    end
    assert(#slice > 0, "thread " .. id .. " has no requests")
    first_us = now_us()
end

function delay()
    if not started then
        -- Before the threads start, wrk calls request() once in thread 0 to check what it returns.
        started, sent = true, 0
    end
    if reserved == #slice then
        return PARK_MS
    end
    reserved = reserved + 1
    return 0
end

function request()
    -- Only a request lost with its connection (a socket error) can make wrk ask for more than the slice.
    sent = math.min(sent + 1, #slice)
    return slice[sent]
end

function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
    received = received + 1
    if received == #slice then
        last_us = now_us()
        io.stderr:write("WRKTHREADDONE " .. id .. "\n")
        io.stderr:flush()
        wrk.thread:stop()
    end
end

function done(summary, latency, requests)
    local received_all, counts, first, last = 0, {}, nil, nil
    for _, thread in ipairs(threads) do
        received_all = received_all + thread:get("received")
        for status, count in pairs(thread:get("statuses")) do
            counts[status] = (counts[status] or 0) + count
        end
        local started_us, finished_us = thread:get("first_us"), thread:get("last_us")
        first = (first == nil or started_us < first) and started_us or first
        last = (finished_us ~= nil and (last == nil or finished_us > last)) and finished_us or last
    end
    local status_fields = {}
    for status, count in pairs(counts) do
        status_fields[#status_fields + 1] = string.format('"%d": %d', status, count)
    end
    local errors = summary.errors
    print(
        string.format(
            'WRKJSON {"duration_us": %d, "requests": %d, "received": %d, "span_us": %s, '
                .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
                .. '"latency_us": {"p50": %d, "p99": %d}, "statuses": {%s}}',
            summary.duration,
            summary.requests,
            received_all,
            (first ~= nil and last ~= nil) and string.format("%.1f", last - first) or "null",
            errors.connect,
            errors.read,
            errors.write,
            errors.status,
            errors.timeout,
            latency:percentile(50),
            latency:percentile(99),
            table.concat(status_fields, ", ")
        )
    )
end
