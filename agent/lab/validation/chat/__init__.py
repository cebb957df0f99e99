"""Scripted chat sessions, checked as a person would check them (`ownrec eval chat`).

    verify     an independent verifier: every checkable statement of an answer against the catalog, the
               history and the trait readings, read again through the store and the facade. It shares no
               checking code with agent.core.llm.claims or grounding, so the chat never grades itself
    script     the requests (each labelled with the kind of answer it should get) and the simulated people
    sessions   runs the script for each person through the real answer path and writes EVALUATION.md's
               chat section
"""
