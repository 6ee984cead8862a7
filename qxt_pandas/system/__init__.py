"""What the operating system gives every layer: durable writes (``durable``), file locks (``locks``), and the
sync driver of the async engine with its signals (``sync``). Imports nothing else of qxt_pandas."""
