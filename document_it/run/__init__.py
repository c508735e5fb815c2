"""The orchestration: how a run goes from its pages to its results (the loop, the runners that put it in worker
processes or on a Dask cluster, the crawl and incremental policies). core/ and analysis/ never import it."""
