"""`ownrec bench`: measured targets, compared side by side in one run (figures in BENCHMARKS.md).

    runner               runs one area of the bench (or all) and writes BENCHMARKS.md
    product              the person's paths: encoding, ranking, feedback, chat, rerank, launch
    history              feedback and feed with a history of 100, 1,000 and 10,000 events
    llm                  the chat LLM's extraction quality and speed against bare llama-cpp-python
    lora                 one personal LoRA training step
    sync_costs           one client's time and bytes per secure-aggregation round
    coordinator          a round with many clients against a real coordinator on loopback
    coordinator_clients  the clients of that round, in processes of their own
"""
