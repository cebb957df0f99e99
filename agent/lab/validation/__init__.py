"""Validations of what the app tells a person: `traits` checks the trait readings and edits on MovieLens; `chat`
checks what the chat says in scripted sessions (`ownrec eval chat`)."""
