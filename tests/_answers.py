"""One valid part of each page analysis, and a combined answer made of them (shared by the schema and agent tests)."""

CONCEPT = {"name": "Backoff", "description": "Waits longer after each failure.", "importance": 7}
ADVICE = {"title": "Cap the delay", "description": "Keep retries under a minute."}
PATTERN = {"name": "retry", "description": "Retry a job.", "example": "job.retry(delay=5)"}
TOPIC = {"name": "Scheduling", "relationship": "Retries are scheduled jobs."}
FULL = {"summary": "How Ferry retries failed jobs.", "key_concepts": [CONCEPT],
        "implementation_details": [ADVICE], "code_patterns": [PATTERN], "related_topics": [TOPIC]}
