"""From files to items: PDF pages, images, screenshots and video clips, decoded under budgets."""
