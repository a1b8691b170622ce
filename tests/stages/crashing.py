"""Stage functions that fail in the ways real converters do; used as custom backends in tests."""

import os
import signal
import time


def segfault(**kwargs):
    os.kill(os.getpid(), signal.SIGSEGV)


def hang(**kwargs):
    time.sleep(600)


def raise_error(**kwargs):
    raise RuntimeError("converter exploded")


def add(a, b):
    return {"sum": a + b}


def pid():
    return {"pid": os.getpid()}


def chatter():
    print("python says hello", flush=True)
    os.system("echo C says hello")   # a child process writing to the inherited descriptors
    return {}
